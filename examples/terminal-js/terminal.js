#!/usr/bin/env node
// A payment terminal written from docs/protocol.md alone: JSON encoding over MQTT
// (MQTT.js), HMAC-SHA256 with Node's crypto. It runs one session against a host and
// checks every answer as the spec tells a terminal to:
//
//   1. echo (0800);
//   2. purchase (0200), then the same purchase resent (same key and STAN, repeat set),
//      and resent again as a 0201: the host must answer with the stored outcome, the
//      same RRN;
//   3. reversal (0400) of that purchase: 00;
//   4. a second purchase, then a batch close (0500) with the totals since the last
//      batch (one debit): 00;
//   5. a reversal of a sale the host never saw: 25.
//
// Configuration comes from the environment, never the command line:
//   POSH_BROKER_URL  mqtt://host:port of the broker the host serves
//   POSH_KEYS        the key file `posharness acquirer serve` wrote (JSON, mode 0600)
//   POSH_TID         this terminal's id (default T0001); POSH_MID its merchant id
// One line per step on stdout; exit 0 when every answer is what the spec says,
// 1 when one is not (with the reason on stderr), 2 on bad configuration.
"use strict";

const crypto = require("node:crypto");
const fs = require("node:fs");
const mqtt = require("mqtt");

const ANSWER_TIMEOUT_MS = 5000;

// docs/protocol.md, "Idempotency key, MAC and freshness": every field but `mac`, in this
// order, defaults included, each as "<byte length>:<value>" after "posh-mac-v2\n".
const FIELDS = [
  ["mti", ""], ["terminal_id", ""], ["merchant_id", ""], ["stan", 0], ["pan", ""],
  ["processing_code", "000000"], ["amount", 0], ["currency", "978"], ["rrn", ""],
  ["rc", ""], ["auth_code", ""], ["idem_key", ""], ["repeat", false], ["orig_stan", 0],
  ["orig_key", ""], ["debit_count", 0], ["debit_amount", 0], ["credit_count", 0],
  ["credit_amount", 0], ["batch_no", 0], ["items", []], ["sent_ms", 0],
];

function lp(value) {
  const text = typeof value === "boolean" ? (value ? "1" : "0") : String(value);
  return `${Buffer.byteLength(text, "utf8")}:${text}`;
}

function macInput(msg) {
  let out = "posh-mac-v2\n";
  for (const [name, dflt] of FIELDS) {
    const value = name in msg ? msg[name] : dflt;
    if (name === "items") {
      out += lp(value.length);
      for (const [stan, amount, rrn] of value) out += lp(stan) + lp(amount) + lp(rrn);
    } else {
      out += lp(value);
    }
  }
  return out;
}

function mac(msg, key) {
  return crypto.createHmac("sha256", key).update(macInput(msg), "utf8").digest("hex").slice(0, 16);
}

function fail(why, code = 1) {
  process.stderr.write(`terminal-js: ${why}\n`);
  process.exit(code);
}

function config() {
  const url = process.env.POSH_BROKER_URL;
  const keysPath = process.env.POSH_KEYS;
  const tid = process.env.POSH_TID || "T0001";
  if (!url || !keysPath) fail("set POSH_BROKER_URL and POSH_KEYS", 2);
  let entry;
  try {
    entry = JSON.parse(fs.readFileSync(keysPath, "utf8"))[tid];
  } catch (err) {
    fail(`${keysPath}: ${err.message}`, 2);
  }
  if (!entry) fail(`${keysPath}: no entry for terminal ${tid}`, 2);
  const hex = typeof entry === "string" ? entry : entry.mac_key;
  return {
    url,
    tid,
    mid: process.env.POSH_MID || "M000000000001",
    key: Buffer.from(hex, "hex"),
    password: typeof entry === "string" ? undefined : entry.broker_password,
  };
}

class Terminal {
  constructor(cfg, client) {
    this.cfg = cfg;
    this.client = client;
    this.stan = 0;
    this.waiting = null;
    client.on("message", (_topic, payload) => this.onFrame(payload));
  }

  nextStan() {
    this.stan = (this.stan % 999999) + 1; // docs: a request's STAN is 1-999999
    return this.stan;
  }

  sign(fields) {
    const msg = { terminal_id: this.cfg.tid, merchant_id: this.cfg.mid, ...fields };
    msg.sent_ms = Date.now(); // freshness: stamped at each send, covered by the MAC
    msg.mac = mac(msg, this.cfg.key);
    return msg;
  }

  // An answer counts only when it is JSON, signed with our key, and echoes the request.
  accepts(req, ans) {
    if (typeof ans !== "object" || ans === null || typeof ans.mac !== "string") return false;
    const { mac: got, ...rest } = ans;
    if (got !== mac(rest, this.cfg.key)) return false;
    const expectMti = req.mti.slice(0, 2) + String(Number(req.mti[2]) + 1) + req.mti[3];
    if (ans.mti !== expectMti || ans.stan !== req.stan) return false;
    for (const f of ["idem_key", "orig_key", "amount", "pan", "batch_no"]) {
      if ((ans[f] ?? null) !== (req[f] ?? null)) return false;
    }
    return true;
  }

  onFrame(payload) {
    let ans;
    try {
      ans = JSON.parse(payload.toString("utf8"));
    } catch {
      return; // not ours to act on: ignore, as the spec says
    }
    const w = this.waiting;
    if (w && this.accepts(w.req, ans)) {
      this.waiting = null;
      clearTimeout(w.timer);
      w.resolve(ans);
    }
  }

  // `repeatMti`: send a resend in ISO 8583's repeat form (0201/0401). The MAC is over
  // the canonical form (the request's MTI with repeat set), as docs/protocol.md says.
  send(fields, repeatMti = false) {
    const req = this.sign(repeatMti ? { ...fields, repeat: true } : fields);
    const wire = repeatMti ? { ...req, mti: req.mti.slice(0, 3) + "1" } : req;
    if (repeatMti) delete wire.repeat;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting = null;
        reject(new Error(`no valid answer to ${req.mti} STAN ${req.stan} within ${ANSWER_TIMEOUT_MS} ms`));
      }, ANSWER_TIMEOUT_MS);
      this.waiting = { req, resolve, timer };
      this.client.publish(`posh/${this.cfg.tid}/req`, JSON.stringify(wire), { qos: 1 });
    });
  }
}

function expect(step, ans, rc) {
  if (ans.rc !== rc) fail(`${step}: rc ${ans.rc}, expected ${rc}`);
  const rrn = ans.rrn ? ` rrn=${ans.rrn}` : "";
  process.stdout.write(`${step} rc=${ans.rc}${rrn}\n`);
}

async function session(t) {
  const pan = "4000000000000002";
  const nonce = crypto.randomBytes(4).toString("hex"); // keys never repeat across runs
  expect("echo", await t.send({ mti: "0800", stan: t.nextStan() }), "00");

  const sale = { mti: "0200", stan: t.nextStan(), pan, amount: 1250, idem_key: `${t.cfg.tid}-${nonce}-1` };
  const first = await t.send(sale);
  expect("purchase", first, "00");
  // A resend: same key, same content and STAN, repeat set; the stored outcome comes back.
  const again = await t.send({ ...sale, repeat: true });
  expect("purchase-resend", again, "00");
  if (again.rrn !== first.rrn) fail(`resend got RRN ${again.rrn}, first ${first.rrn}`);
  const third = await t.send(sale, true);
  expect("purchase-resend-0201", third, "00");
  if (third.rrn !== first.rrn) fail(`0201 resend got RRN ${third.rrn}, first ${first.rrn}`);

  const rev = { mti: "0400", stan: t.nextStan(), orig_key: sale.idem_key, orig_stan: sale.stan, amount: 1250, pan };
  expect("reversal", await t.send(rev), "00");

  const sale2 = { mti: "0200", stan: t.nextStan(), pan, amount: 300, idem_key: `${t.cfg.tid}-${nonce}-2` };
  expect("purchase-2", await t.send(sale2), "00");
  // Totals since the last batch: the reversed sale is not a debit, the second one is.
  // A fresh batch number per run (the host closes each number once).
  const batch = { mti: "0500", stan: t.nextStan(), batch_no: 1 + (parseInt(nonce, 16) % 999999), debit_count: 1, debit_amount: 300 };
  expect("batch", await t.send(batch), "00");

  const ghost = { mti: "0400", stan: t.nextStan(), orig_key: `${t.cfg.tid}-${nonce}-9`, orig_stan: 99, amount: 500, pan };
  expect("reversal-of-unknown", await t.send(ghost), "25");
}

async function main() {
  const cfg = config();
  const url = new URL(cfg.url);
  url.username = ""; // this terminal logs in as itself, whatever login the URL names
  url.password = "";
  const client = await mqtt.connectAsync(url.toString(), {
    clientId: cfg.tid, // the private broker uses the login as client id anyway
    username: cfg.password ? cfg.tid : undefined,
    password: cfg.password,
    clean: true,
    reconnectPeriod: 0,
    connectTimeout: ANSWER_TIMEOUT_MS,
  });
  await client.subscribeAsync(`posh/${cfg.tid}/resp`, { qos: 1 });
  const t = new Terminal(cfg, client);
  try {
    await session(t);
  } catch (err) {
    fail(err.message);
  } finally {
    await client.endAsync();
  }
}

main().catch((err) => fail(err.message));

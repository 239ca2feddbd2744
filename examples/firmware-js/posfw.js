// posfw.js: the exec: firmware pipe protocol, version 1, for Node.js (no npm
// dependencies). A firmware supplies `create(config)` returning an object with
// `handle(event) -> effects[]`; this module runs the loop: read one JSON line per
// event from stdin, answer one JSON line of effects on stdout, logs on stderr.
// See docs/firmware-protocol.md in the posharness repository.
"use strict";

const PROTOCOL = 1;

// Message fields as the harness sends them: only non-default fields are present.
const MESSAGE_DEFAULTS = {
  pan: "",
  processing_code: "000000",
  amount: 0,
  currency: "978",
  rrn: "",
  rc: "",
  auth_code: "",
  idem_key: "",
  repeat: false,
  orig_stan: 0,
  orig_key: "",
  debit_count: 0,
  debit_amount: 0,
  credit_count: 0,
  credit_amount: 0,
  batch_no: 0,
  items: [],
};

function withDefaults(message) {
  return Object.assign({}, MESSAGE_DEFAULTS, message);
}

// Effects, spelled as the protocol wants them.
const fx = {
  send: (message) => ({ type: "Send", message }),
  setTimer: (name, delayMs) => ({ type: "SetTimer", name, delay_ms: delayMs }),
  cancelTimer: (name) => ({ type: "CancelTimer", name }),
  journal: (record) => ({ type: "JournalAppend", record }),
  trim: (count) => ({ type: "JournalTrim", count }),
  print: (jobId, receipt) => ({ type: "Print", job_id: jobId, receipt }),
  display: (outcome, text = "", rrn = "") => ({ type: "Display", outcome, text, rrn }),
};

function run({ name, version, create }) {
  let firmware = null;
  let pending = "";
  const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
  const onLine = (line) => {
    if (!line) return;
    let event;
    try {
      event = JSON.parse(line);
    } catch (err) {
      process.stderr.write(`posfw: not a JSON line: ${line.slice(0, 80)}\n`);
      process.exit(2);
    }
    if (event.type === "hello") {
      firmware = create(event.config);
      out({ type: "hello", protocol: PROTOCOL, name, version });
      return;
    }
    if (firmware === null) {
      process.stderr.write("posfw: an event before hello\n");
      process.exit(2);
    }
    if (event.type === "MessageReceived") event.message = withDefaults(event.message);
    out({ n: event.n, effects: firmware.handle(event) });
  };
  process.stdin.setEncoding("utf8");
  process.stdin.on("data", (chunk) => {
    pending += chunk;
    let end;
    while ((end = pending.indexOf("\n")) >= 0) {
      const line = pending.slice(0, end);
      pending = pending.slice(end + 1);
      onLine(line);
    }
  });
  process.stdin.on("end", () => process.exit(0));
}

module.exports = { run, fx, withDefaults };

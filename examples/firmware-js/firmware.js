#!/usr/bin/env node
// The posharness reference firmware, ported to JavaScript: the same purchase state
// machine as terminal/reference.py, rule for rule, so that its traces are byte for
// byte the reference's. Read that file's docstring for why each rule exists:
//   1. one idempotency key (with the boot nonce) per sale, journaled before the
//      first send, reused on every resend; taps and confirms debounced by state;
//   2. after the last timeout the host is asked what became of the sale (status
//      inquiry, 0600; unless config.status_inquiry is false): approved completes
//      it, a stored decline declines it; otherwise the reversal is journaled before
//      FAILED is shown and retried durably, with backoff, across reboots;
//   3. amounts validated at entry, integer minor units throughout;
//   4. the approval journaled before the display and the print; a failed print
//      leaves the receipt pending, reprinted from the journal;
//   5. only answers the harness verified (mac_ok) and that echo the request are
//      acted on; receipts come only from journaled approvals.
// FLAW=naive-retry plants a known flaw: a response timeout resends the purchase as
// a brand-new sale (new key, new STAN): a duplicate charge when the answer was lost.
"use strict";

const { run, fx } = require("./posfw");

const FLAW = process.env.FLAW || "";

const RESPONSE_TIMER = "response";
const IN_PROGRESS_TIMER = "in-progress";
const REVERSAL_TIMER = "reversal";
const BATCH_TIMER = "batch";
const INQUIRY_TIMER = "inquiry";
const IN_PROGRESS_RETRY_DELAY_MS = 2000;
const IN_PROGRESS_RETRIES_MAX = 5;
const REVERSALS_QUEUED_MAX = 32;
const RECEIPTS_PENDING_MAX = 16;
const SALES_PER_BATCH_MAX = 10000;
const BATCH_SENDS_MAX = 5;
const BATCH_NOS_PER_DEVICE = 1000000n;
const BATCH_BASE_MAX = 100000000000n;
const STAN_MAX = 999999;

const RESPONSE_CODES = {
  "00": "approved",
  "05": "do not honour",
  "12": "invalid transaction",
  "09": "request in progress",
  "13": "invalid amount",
  "25": "unable to locate original",
  "30": "format error",
  "51": "insufficient funds",
  "63": "security violation (stale transmission time)",
  "91": "issuer unavailable",
  "94": "duplicate transmission",
  "95": "reconcile error",
  "96": "system error",
};
const TRANSIENT_RCS = new Set(["91", "96", "30", "63"]);
const BATCH_CLOSING_RCS = new Set(["00", "95"]);
// What a 0610 may report for a sale the host declined and stored.
const STORED_DECLINES = new Set(["05", "13", "51"]);

const IDLE = "idle";
const AMOUNT_ENTERED = "amount-entered";
const AWAITING_CARD = "awaiting-card";
const AUTHORISING = "authorising";

const IN_FLIGHT = "in-flight";
const APPROVED = "approved";
const DECLINED = "declined";
const REVERSING = "reversing";
const REVERSED = "reversed";
const REVERSAL_MANUAL = "reversal-manual";

const stanFor = (saleNo) => ((saleNo - 1) % STAN_MAX) + 1;

function saleRecord(s) {
  return {
    type: "sale",
    key: s.key,
    stan: s.stan,
    amount: s.amount,
    pan: s.pan,
    sale_no: s.saleNo,
    batch_no: s.batchNo,
  };
}

function approvalRecord(a) {
  return { type: "approved", key: a.key, rrn: a.rrn, auth_code: a.authCode, amount: a.amount };
}

const reversalRecord = (s) => ({ type: "reversal_pending", key: s.key, stan: s.stan, amount: s.amount });

// Journal values as Python's int() and str() read them; a bad one skips the record.
function int(v) {
  if (typeof v === "number" && Number.isInteger(v)) return v;
  if (typeof v === "string" && /^\s*[-+]?\d+\s*$/.test(v)) return Number.parseInt(v, 10);
  if (typeof v === "boolean") return v ? 1 : 0;
  throw new Error("not an integer");
}
function str(v) {
  if (v === undefined) throw new Error("missing");
  return typeof v === "string" ? v : JSON.stringify(v);
}
function need(record, key) {
  if (!(key in record)) throw new Error(`missing ${key}`);
  return record[key];
}

class ReferenceFirmware {
  constructor(config) {
    this.config = config;
    this.reset();
  }

  reset() {
    this.state = IDLE;
    this.amount = 0;
    this.sale = null;
    this.request = null;
    this.sends = 0;
    this.inProgressRetries = 0;
    this.saleTimer = "";
    this.lastSale = null;
    this.journalLen = 0;
    this.epoch = 0;
    this.nonce = "";
    this.saleNo = 0;
    this.lastClosedBatch = 0;
    this.openBatchNo = 1;
    this.openBatchCount = 0;
    this.sales = new Map();
    this.status = new Map();
    this.approvals = new Map();
    this.reversals = new Map();
    this.reversalKey = "";
    this.reversalTries = 0;
    this.pendingReceipts = new Map();
    this.printJobs = new Map();
    this.printSeq = 0;
    this.lastReceiptKey = "";
    this.batchWanted = false;
    this.batch = null;
    this.batchMessage = null;
    this.batchSends = 0;
    this.batchResumed = false;
    this.batchAgain = false; // the cashier asked again while a close was under way
  }

  handle(event) {
    switch (event.type) {
      case "Boot":
        return this.onBoot(event);
      case "AmountKeyed":
        return this.onAmountKeyed(event.amount);
      case "ConfirmPressed":
        return this.onConfirm();
      case "CancelPressed":
        return this.onCancel();
      case "CardPresented":
        return this.onCard(event.pan);
      case "MessageReceived":
        return this.onMessage(event.message, event.mac_ok);
      case "TimerExpired":
        return this.onTimer(event.name);
      case "PrintFinished":
        return this.onPrintFinished(event.job_id, event.status);
      case "ReprintRequested":
        return this.onReprint();
      case "BatchCloseRequested":
        return this.onBatchCloseRequested();
      default:
        return [];
    }
  }

  // ------------------------------------------------------------ boot and replay

  onBoot(event) {
    this.reset();
    const journal = event.journal;
    this.journalLen = journal.length;
    this.epoch = journal.length;
    const nonce = event.nonce;
    const hex = nonce.length > 0 && nonce.length <= 16 && /^[0-9a-f]+$/.test(nonce);
    this.nonce = hex ? nonce : "";
    for (const record of journal) this.replay(record);
    this.openBatchNo = this.firstOpenBatchNo();
    let count = 0;
    for (const sale of this.sales.values()) if (sale.batchNo === this.openBatchNo) count += 1;
    this.openBatchCount = count;
    return this.recover();
  }

  firstOpenBatchNo() {
    if (this.lastClosedBatch) return this.lastClosedBatch + 1;
    if (this.batch !== null) return this.batch.batchNo;
    let max = 0;
    for (const sale of this.sales.values()) if (sale.batchNo && sale.batchNo > max) max = sale.batchNo;
    if (max) return max;
    if (this.nonce) {
      return Number((BigInt("0x" + this.nonce) % BATCH_BASE_MAX) * BATCH_NOS_PER_DEVICE + 1n);
    }
    return 1;
  }

  replay(record) {
    try {
      const kind = record.type;
      if (kind === "batch_closed" || kind === "batch_started") {
        this.replayBatch(kind, record);
        return;
      }
      const key = str(need(record, "key"));
      if (kind === "sale") {
        const sale = {
          key,
          stan: int(need(record, "stan")),
          amount: int(need(record, "amount")),
          pan: str(need(record, "pan")),
          saleNo: int(need(record, "sale_no")),
          batchNo: int("batch_no" in record ? record.batch_no : 0),
        };
        this.sales.set(key, sale);
        if (!this.status.has(key)) this.status.set(key, IN_FLIGHT);
        this.saleNo = Math.max(this.saleNo, sale.saleNo);
      } else if (kind === "approved") {
        const approval = {
          key,
          rrn: str(need(record, "rrn")),
          authCode: str(need(record, "auth_code")),
          amount: int(need(record, "amount")),
        };
        this.approvals.set(key, approval);
        this.status.set(key, APPROVED);
        this.pendingReceipts.set(key, null);
        this.lastReceiptKey = key;
      } else if (kind === "declined") {
        this.status.set(key, DECLINED);
      } else if (kind === "reversal_pending") {
        const st = this.status.get(key);
        if (st !== REVERSED && st !== REVERSAL_MANUAL) {
          const sale = this.sales.get(key) || {
            key,
            stan: int(need(record, "stan")),
            amount: int(need(record, "amount")),
            pan: "",
            saleNo: 0,
            batchNo: 0,
          };
          this.reversals.set(key, sale);
          this.status.set(key, REVERSING);
        }
      } else if (kind === "reversed") {
        this.status.set(key, REVERSED);
        this.reversals.delete(key);
      } else if (kind === "reversal_manual") {
        this.status.set(key, REVERSAL_MANUAL);
        this.reversals.delete(key);
      } else if (kind === "printed") {
        this.pendingReceipts.delete(key);
      }
    } catch (err) {
      // A malformed record is skipped: refusing to boot would strand the others.
    }
  }

  replayBatch(kind, record) {
    const batchNo = int(need(record, "batch_no"));
    this.saleNo = Math.max(this.saleNo, int(need(record, "sale_no")));
    if (kind === "batch_started") {
      if (batchNo > this.lastClosedBatch) {
        this.batch = { batchNo, saleNo: int(record.sale_no), stan: int(need(record, "stan")) };
      }
    } else {
      this.lastClosedBatch = Math.max(this.lastClosedBatch, batchNo);
      if (this.batch !== null && this.batch.batchNo <= batchNo) this.batch = null;
    }
  }

  recover() {
    let effects = [];
    for (const [key, sale] of this.sales) {
      if (this.status.get(key) === IN_FLIGHT) effects = effects.concat(this.onBootUnresolvedSale(sale));
    }
    for (const key of [...this.pendingReceipts.keys()]) {
      const approval = this.approvals.get(key);
      effects.push(this.journal({ type: "receipt_pending", key }));
      effects.push(fx.display("approved", "LAST SALE APPROVED", approval.rrn));
      effects.push(fx.display("receipt-pending", "RECEIPT PENDING", approval.rrn));
      effects.push(this.print(key, false));
    }
    effects = effects.concat(this.pumpReversals());
    if (this.batch !== null) {
      this.batchWanted = true;
      this.batchResumed = true;
      effects = effects.concat(this.maybeStartBatch());
    }
    return effects;
  }

  onBootUnresolvedSale(sale) {
    const effects = this.recordReversalPending(sale);
    effects.push(fx.display("failed", "LAST SALE NOT COMPLETED - REVERSED"));
    return effects.concat(this.enqueueReversal(sale));
  }

  // ------------------------------------------------------------ keypad and reader

  onAmountKeyed(amount) {
    if (this.state === AUTHORISING) return [fx.display("prompt", "BUSY")];
    if (!(Number.isInteger(amount) && amount > 0 && amount <= this.config.amount_max)) {
      this.state = IDLE;
      return [fx.display("declined", "INVALID AMOUNT")];
    }
    this.amount = amount;
    this.state = AMOUNT_ENTERED;
    return [fx.display("prompt", "CONFIRM AMOUNT")];
  }

  onConfirm() {
    if (this.state === AMOUNT_ENTERED) {
      this.state = AWAITING_CARD;
      return [fx.display("prompt", "PRESENT CARD")];
    }
    return []; // a second confirm starts nothing (debounce by state)
  }

  onCancel() {
    if (this.state === AMOUNT_ENTERED || this.state === AWAITING_CARD) {
      this.state = IDLE;
      return [fx.display("failed", "CANCELLED - NOT CHARGED")];
    }
    return [];
  }

  onCard(pan) {
    if (this.state === AWAITING_CARD) {
      if (!pan) return [fx.display("prompt", "TRY AGAIN")];
      return this.startSale(this.amount, pan);
    }
    return []; // a second tap, or a tap with no fresh amount, starts nothing
  }

  startSale(amount, pan) {
    this.state = IDLE;
    const blocked = this.saleBlockedReason();
    if (blocked) return [fx.display("declined", blocked)];
    this.saleNo += 1;
    const saleNo = this.saleNo;
    const sale = { key: this.makeKey(saleNo), stan: stanFor(saleNo), amount, pan, saleNo, batchNo: this.openBatchNo };
    this.sales.set(sale.key, sale);
    this.status.set(sale.key, IN_FLIGHT);
    this.openBatchCount += 1;
    this.sale = this.lastSale = sale;
    this.state = AUTHORISING;
    this.sends = 1;
    this.inProgressRetries = 0;
    this.saleTimer = RESPONSE_TIMER;
    const cfg = this.config;
    this.request = {
      mti: "0200",
      terminal_id: cfg.terminal_id,
      merchant_id: cfg.merchant_id,
      stan: sale.stan,
      pan,
      amount,
      idem_key: sale.key,
    };
    return [
      this.journal(saleRecord(sale)),
      fx.display("pending", "PROCESSING"),
      fx.send(this.request),
      fx.setTimer(RESPONSE_TIMER, cfg.response_timeout_ms),
    ];
  }

  saleBlockedReason() {
    if (this.batchWanted || this.batch !== null) return "BATCH CLOSING - TRY LATER";
    if (this.reversals.size >= REVERSALS_QUEUED_MAX) return "REVERSALS PENDING - TRY LATER";
    if (this.pendingReceipts.size >= RECEIPTS_PENDING_MAX) return "RECEIPTS PENDING - REPRINT FIRST";
    if (this.openBatchCount >= SALES_PER_BATCH_MAX) return "BATCH FULL - CLOSE BATCH";
    return "";
  }

  makeKey(saleNo) {
    const tid = this.config.terminal_id;
    const counter = String(saleNo).padStart(10, "0");
    return this.nonce ? `${tid}-${this.nonce}-${counter}` : `${tid}-${counter}`;
  }

  // ------------------------------------------------------------ host responses

  onMessage(msg, macOk) {
    const cfg = this.config;
    if (!macOk || msg.terminal_id !== cfg.terminal_id || msg.merchant_id !== cfg.merchant_id) return [];
    if (msg.mti === "0210") {
      const sale = this.sale;
      if (this.state === AUTHORISING && sale && this.matchesSale(msg, sale)) return this.onPurchaseResponse(msg);
      return []; // a duplicate, or late after a timeout: never an approval now
    }
    if (msg.mti === "0410") return this.onReversalResponse(msg);
    if (msg.mti === "0610") {
      const sale = this.sale;
      const r = this.request;
      const ours =
        this.state === AUTHORISING && sale && r !== null &&
        msg.orig_key === sale.key && msg.stan === sale.stan && msg.amount === r.amount;
      return ours ? this.onInquiryAnswer(sale, msg) : [];
    }
    if (msg.mti === "0510") return this.onBatchResponse(msg);
    return [];
  }

  matchesSale(msg, sale) {
    const r = this.request;
    return (
      r !== null &&
      msg.stan === sale.stan &&
      msg.idem_key === sale.key &&
      msg.pan === r.pan &&
      msg.amount === r.amount &&
      msg.processing_code === "000000" &&
      msg.currency === "978"
    );
  }

  onPurchaseResponse(msg) {
    const sale = this.sale;
    const rc = msg.rc;
    if (rc === "09") return this.onInProgress();
    if (TRANSIENT_RCS.has(rc)) return this.onTransient(msg);
    if (rc === "94") return this.giveUp();
    let effects = this.closeSale();
    effects = effects.concat(rc === "00" ? this.onApproved(sale, msg) : this.decline(sale, rc));
    return effects.concat(this.afterSale());
  }

  onApproved(sale, msg) {
    const approval = { key: sale.key, rrn: msg.rrn, authCode: msg.auth_code, amount: msg.amount > 0 ? msg.amount : sale.amount };
    this.approvals.set(sale.key, approval);
    this.status.set(sale.key, APPROVED);
    this.pendingReceipts.set(sale.key, null);
    this.lastReceiptKey = sale.key;
    return [
      this.journal(approvalRecord(approval)),
      fx.display("approved", "APPROVED", approval.rrn),
      this.print(sale.key, false),
    ];
  }

  decline(sale, rc) {
    this.status.set(sale.key, DECLINED);
    const reason = (RESPONSE_CODES[rc] || `code ${rc}`).toUpperCase();
    return [this.journal({ type: "declined", key: sale.key, rc }), fx.display("declined", `DECLINED - ${reason}`)];
  }

  onInProgress() {
    this.inProgressRetries += 1;
    if (this.inProgressRetries > IN_PROGRESS_RETRIES_MAX) return this.giveUp();
    this.saleTimer = IN_PROGRESS_TIMER;
    return [fx.cancelTimer(RESPONSE_TIMER), fx.setTimer(IN_PROGRESS_TIMER, IN_PROGRESS_RETRY_DELAY_MS)];
  }

  onTransient(msg) {
    if (this.sends < this.config.max_sends) {
      this.sends += 1;
      return this.resend();
    }
    const sale = this.sale;
    if (sale === null) return [];
    const multipleSends = this.sends > 1;
    let effects = this.closeSale();
    // The reversal record goes before the decline's: a power cut between them must
    // not leave a declined sale whose charged first copy nobody reverses.
    if (multipleSends) effects = effects.concat(this.recordReversalPending(sale));
    effects = effects.concat(this.decline(sale, msg.rc));
    if (multipleSends) effects = effects.concat(this.enqueueReversal(sale));
    return effects.concat(this.afterSale());
  }

  resend() {
    if (this.request === null) return [];
    this.saleTimer = RESPONSE_TIMER;
    return [fx.send({ ...this.request, repeat: true }), fx.setTimer(RESPONSE_TIMER, this.config.response_timeout_ms)];
  }

  onResponseTimeout() {
    if (FLAW === "naive-retry") return this.naiveRetry();
    if (this.sends < this.config.max_sends) {
      this.sends += 1;
      return this.resend();
    }
    return this.config.status_inquiry === false ? this.giveUp() : this.inquire();
  }

  inquire() {
    // The outcome is unknown: ask the host before reversing.
    const sale = this.sale;
    const r = this.request;
    if (sale === null || r === null) return [];
    this.saleTimer = INQUIRY_TIMER;
    const cfg = this.config;
    const query = {
      mti: "0600",
      terminal_id: cfg.terminal_id,
      merchant_id: cfg.merchant_id,
      stan: sale.stan,
      pan: sale.pan,
      amount: r.amount,
      orig_stan: sale.stan,
      orig_key: sale.key,
    };
    return [fx.send(query), fx.setTimer(INQUIRY_TIMER, cfg.response_timeout_ms)];
  }

  onInquiryAnswer(sale, msg) {
    if (this.saleTimer !== INQUIRY_TIMER) return [];
    const rc = msg.rc;
    if (rc === "00" || STORED_DECLINES.has(rc)) {
      const effects = this.closeSale();
      return effects
        .concat(rc === "00" ? this.onApproved(sale, msg) : this.decline(sale, rc))
        .concat(this.afterSale());
    }
    return this.giveUp(); // not found, in progress, closed: reverse
  }

  naiveRetry() {
    // The planted flaw: a new key and a new STAN for the same purchase.
    const sale = this.sale;
    if (sale === null) return [];
    if (this.sends < this.config.max_sends) {
      const sends = this.sends;
      const effects = this.startSale(sale.amount, sale.pan);
      this.sends = sends + 1;
      return effects;
    }
    const effects = this.closeSale();
    this.status.set(sale.key, DECLINED);
    effects.push(this.journal({ type: "declined", key: sale.key, rc: "timeout" }));
    effects.push(fx.display("failed", "TIMEOUT"));
    return effects;
  }

  giveUp() {
    const sale = this.sale;
    if (sale === null) return [];
    let effects = this.closeSale().concat(this.recordReversalPending(sale));
    effects.push(fx.display("failed", "NOT CHARGED - REVERSING"));
    effects = effects.concat(this.enqueueReversal(sale));
    return effects.concat(this.afterSale());
  }

  closeSale() {
    const timer = this.saleTimer;
    this.sale = null;
    this.request = null;
    this.saleTimer = "";
    this.state = IDLE;
    return timer ? [fx.cancelTimer(timer)] : [];
  }

  afterSale() {
    return this.batchWanted ? this.maybeStartBatch() : [];
  }

  // ------------------------------------------------------------ reversals

  recordReversalPending(sale) {
    return [this.journal(reversalRecord(sale))];
  }

  enqueueReversal(sale) {
    this.reversals.set(sale.key, sale);
    this.status.set(sale.key, REVERSING);
    return this.pumpReversals();
  }

  pumpReversals() {
    if (this.reversalKey || this.reversals.size === 0) return [];
    this.reversalKey = this.reversals.keys().next().value;
    this.reversalTries = 0;
    return this.sendReversal();
  }

  sendReversal() {
    const sale = this.reversals.get(this.reversalKey);
    this.reversalTries += 1;
    const cfg = this.config;
    const msg = {
      mti: "0400",
      terminal_id: cfg.terminal_id,
      merchant_id: cfg.merchant_id,
      stan: sale.stan,
      pan: sale.pan,
      amount: sale.amount,
      orig_stan: sale.stan,
      orig_key: sale.key,
      repeat: this.reversalTries > 1,
    };
    const backoff = cfg.reversal_backoff_ms;
    const delay = backoff.length ? backoff[Math.min(this.reversalTries, backoff.length - 1)] : 0;
    return [fx.send(msg), fx.setTimer(REVERSAL_TIMER, delay || cfg.response_timeout_ms)];
  }

  onReversalTimeout() {
    const key = this.reversalKey;
    if (!key) return [];
    if (this.reversalTries < this.config.reversal_max_tries) return this.sendReversal();
    return this.reversalManual(key);
  }

  reversalManual(key) {
    let effects = [];
    if (key === this.reversalKey) {
      this.reversalKey = "";
      effects.push(fx.cancelTimer(REVERSAL_TIMER));
    }
    this.reversals.delete(key);
    this.status.set(key, REVERSAL_MANUAL);
    effects.push(this.journal({ type: "reversal_manual", key }));
    effects.push(fx.display("prompt", "REVERSAL NEEDS MANUAL HANDLING"));
    return effects.concat(this.afterReversal());
  }

  matchReversal(msg) {
    const sale = this.reversals.get(msg.orig_key);
    if (!sale || msg.orig_stan !== sale.stan || msg.stan !== sale.stan || msg.amount !== sale.amount) return "";
    return sale.key;
  }

  onReversalResponse(msg) {
    const key = this.matchReversal(msg);
    if (!key) return [];
    if (msg.rc === "12") return this.reversalManual(key);
    // 25: the host holds no such sale and keeps a tombstone, so it is never charged.
    if (msg.rc !== "00" && msg.rc !== "25") return [];
    this.reversals.delete(key);
    this.status.set(key, REVERSED);
    const effects = [this.journal({ type: "reversed", key })];
    if (key === this.reversalKey) {
      this.reversalKey = "";
      effects.push(fx.cancelTimer(REVERSAL_TIMER));
    }
    return effects.concat(this.afterReversal());
  }

  afterReversal() {
    let effects = this.pumpReversals();
    if (this.batchWanted) effects = effects.concat(this.maybeStartBatch());
    return effects;
  }

  // ------------------------------------------------------------ receipts

  renderReceipt(key, copy) {
    const approval = this.approvals.get(key);
    const sale = this.sales.get(key);
    return {
      status: "approved",
      amount: approval.amount,
      rrn: approval.rrn,
      stan: sale ? sale.stan : 0,
      pan_last4: sale ? sale.pan.slice(-4) : "",
      auth_code: approval.authCode,
      idem_key: key,
      copy,
    };
  }

  print(key, copy) {
    this.printSeq += 1;
    const jobId = `${key}/${this.epoch}.${this.printSeq}`;
    this.printJobs.set(jobId, { key, copy });
    return fx.print(jobId, this.renderReceipt(key, copy));
  }

  onPrintFinished(jobId, status) {
    const job = this.printJobs.get(jobId);
    if (!job) return [];
    this.printJobs.delete(jobId);
    const { key, copy } = job;
    if (status === "ok") {
      if (!copy && this.pendingReceipts.has(key)) {
        this.pendingReceipts.delete(key);
        return [this.journal({ type: "printed", key })];
      }
      return [];
    }
    if (copy || !this.pendingReceipts.has(key)) return [fx.display("prompt", "PRINT FAILED")];
    return [fx.display("receipt-pending", "RECEIPT PENDING - PRESS REPRINT", this.approvals.get(key).rrn)];
  }

  onReprint() {
    const printing = new Set([...this.printJobs.values()].map((j) => j.key));
    for (const key of this.pendingReceipts.keys()) {
      if (!printing.has(key)) return [this.print(key, false)];
    }
    if (this.pendingReceipts.size) return [fx.display("prompt", "PRINTING")];
    const key = this.lastReceiptKey;
    if (!key || !this.approvals.has(key)) return [fx.display("prompt", "NO RECEIPT")];
    if ([...this.printJobs.values()].some((j) => j.copy)) return [fx.display("prompt", "PRINTING")];
    return [this.print(key, true)];
  }

  // ------------------------------------------------------------ batch close

  onBatchCloseRequested() {
    if (this.batchWanted) {
      this.batchAgain = true; // if its sends run out, start over rather than drop this
      return [fx.display("prompt", "BATCH IN PROGRESS")];
    }
    this.batchWanted = true;
    const effects = this.maybeStartBatch();
    return effects.length ? effects : [fx.display("prompt", "BATCH WAITING")];
  }

  maybeStartBatch() {
    if (!this.batchWanted || this.batchSends || this.state === AUTHORISING || this.reversals.size) return [];
    const effects = [];
    let batch = this.batch;
    if (batch === null) {
      this.saleNo += 1;
      batch = { batchNo: this.openBatchNo, saleNo: this.saleNo, stan: stanFor(this.saleNo) };
      this.batch = batch;
      effects.push(this.journal({ type: "batch_started", batch_no: batch.batchNo, sale_no: batch.saleNo, stan: batch.stan }));
    }
    const items = this.batchSales();
    const cfg = this.config;
    this.batchMessage = {
      mti: "0500",
      terminal_id: cfg.terminal_id,
      merchant_id: cfg.merchant_id,
      stan: batch.stan,
      batch_no: batch.batchNo,
      debit_count: items.length,
      debit_amount: items.reduce((sum, item) => sum + item[1], 0),
      items,
    };
    effects.push(fx.display("prompt", "BATCH CLOSING"));
    return effects.concat(this.sendBatch());
  }

  batchSales() {
    const out = [];
    for (const [key, sale] of this.sales) {
      if (sale.batchNo === this.openBatchNo && this.status.get(key) === APPROVED) {
        const approval = this.approvals.get(key);
        if (approval) out.push([sale.stan, approval.amount, approval.rrn]);
      }
    }
    return out;
  }

  sendBatch() {
    const msg = this.batchMessage;
    if (msg === null) return [];
    const repeat = this.batchResumed || this.batchSends > 0;
    this.batchSends += 1;
    return [fx.send({ ...msg, repeat }), fx.setTimer(BATCH_TIMER, this.config.response_timeout_ms)];
  }

  onBatchTimeout() {
    if (!this.batchSends) return [];
    if (this.batchSends < BATCH_SENDS_MAX) return this.sendBatch();
    if (this.batchAgain) {
      this.batchAgain = false;
      this.batchSends = 0;
      this.batchResumed = true;
      return this.sendBatch();
    }
    this.batchWanted = false;
    this.batchSends = 0;
    this.batchResumed = true;
    return [fx.display("prompt", "BATCH NOT CONFIRMED - CLOSE AGAIN")];
  }

  onBatchResponse(msg) {
    const batch = this.batch;
    const sent = this.batchMessage;
    if (
      batch === null ||
      sent === null ||
      !this.batchSends ||
      msg.batch_no !== batch.batchNo ||
      msg.stan !== batch.stan ||
      msg.debit_count !== sent.debit_count ||
      msg.debit_amount !== sent.debit_amount ||
      msg.credit_count !== 0 ||
      msg.credit_amount !== 0 ||
      !BATCH_CLOSING_RCS.has(msg.rc)
    ) {
      return [];
    }
    const effects = [fx.cancelTimer(BATCH_TIMER)];
    const trimCount = this.journalLen;
    const keep = new Set();
    for (const key of this.pendingReceipts.keys()) {
      keep.add(key);
      const sale = this.sales.get(key);
      if (sale) effects.push(this.journal(saleRecord(sale)));
      effects.push(this.journal(approvalRecord(this.approvals.get(key))));
    }
    for (const [key, sale] of this.reversals) {
      keep.add(key);
      if (sale.saleNo) effects.push(this.journal(saleRecord(sale)));
      effects.push(this.journal(reversalRecord(sale)));
    }
    effects.push(this.journal({ type: "batch_closed", batch_no: batch.batchNo, rc: msg.rc, sale_no: this.saleNo }));
    effects.push(fx.trim(trimCount));
    this.journalLen -= trimCount;
    if (this.lastReceiptKey) keep.add(this.lastReceiptKey);
    const prune = (map) => new Map([...map].filter(([k]) => keep.has(k)));
    this.sales = prune(this.sales);
    this.status = prune(this.status);
    this.approvals = prune(this.approvals);
    this.lastClosedBatch = batch.batchNo;
    this.openBatchNo = batch.batchNo + 1;
    this.openBatchCount = 0;
    this.batch = null;
    this.batchMessage = null;
    this.batchWanted = false;
    this.batchAgain = false;
    this.batchSends = 0;
    this.batchResumed = false;
    effects.push(fx.display("prompt", msg.rc === "00" ? "BATCH OK" : "BATCH MISMATCH"));
    return effects;
  }

  // ------------------------------------------------------------ timers and journal

  onTimer(name) {
    if (name === RESPONSE_TIMER || name === IN_PROGRESS_TIMER) {
      if (this.state !== AUTHORISING || this.saleTimer !== name) return [];
      return name === RESPONSE_TIMER ? this.onResponseTimeout() : this.resend();
    }
    if (name === INQUIRY_TIMER) {
      if (this.state !== AUTHORISING || this.saleTimer !== name) return [];
      return this.giveUp(); // no answer to the inquiry either
    }
    if (name === REVERSAL_TIMER) return this.onReversalTimeout();
    if (name === BATCH_TIMER) return this.onBatchTimeout();
    return [];
  }

  journal(record) {
    this.journalLen += 1;
    return fx.journal(record);
  }
}

run({
  name: FLAW ? `firmware-js (FLAW=${FLAW})` : "firmware-js",
  version: "1.0",
  create: (config) => new ReferenceFirmware(config),
});

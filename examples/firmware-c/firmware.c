/* The posharness reference firmware, ported to C11: the same purchase state machine
 * as terminal/reference.py, rule for rule, so that its traces are byte for byte the
 * reference's. Read that file's docstring for why each rule exists:
 *   1. one idempotency key (with the boot nonce) per sale, journaled before the
 *      first send and reused on every resend; taps and confirms debounced by state;
 *   2. after the last timeout the host is asked what became of the sale (status
 *      inquiry, 0600; unless config.status_inquiry is false): approved completes it,
 *      a stored decline declines it; otherwise the reversal is journaled before
 *      FAILED is shown and retried durably, with backoff, across reboots;
 *   3. amounts validated at entry, integer minor units throughout;
 *   4. the approval journaled before the display and the print; a failed print
 *      leaves the receipt pending, reprinted from the journal;
 *   5. only answers the harness verified (mac_ok) and that echo the request are
 *      acted on; receipts come only from journaled approvals.
 * Built with FLAW=naive-retry (make FLAW=naive-retry) it carries a known flaw: a
 * response timeout resends the purchase as a new sale (new key, new STAN).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "posfw.h"

#define RESPONSE_TIMER "response"
#define IN_PROGRESS_TIMER "in-progress"
#define REVERSAL_TIMER "reversal"
#define BATCH_TIMER "batch"
#define INQUIRY_TIMER "inquiry"
#define IN_PROGRESS_RETRY_DELAY_MS 2000
#define IN_PROGRESS_RETRIES_MAX 5
#define REVERSALS_QUEUED_MAX 32
#define RECEIPTS_PENDING_MAX 16
#define SALES_PER_BATCH_MAX 10000
#define BATCH_SENDS_MAX 5
#define BATCH_NOS_PER_DEVICE 1000000ULL
#define BATCH_BASE_MAX 100000000000ULL
#define STAN_MAX 999999
#define KEY POSFW_STR

enum state { IDLE, AMOUNT_ENTERED, AWAITING_CARD, AUTHORISING };
enum status { ST_NONE, IN_FLIGHT, APPROVED, DECLINED, REVERSING, REVERSED, REVERSAL_MANUAL };

typedef struct {
    char key[KEY];
    long long stan, amount;
    char pan[POSFW_STR];
    long long sale_no, batch_no;
} sale_t;

typedef struct {
    char rrn[POSFW_STR];
    char auth_code[POSFW_STR];
    long long amount;
} approval_t;

/* Everything known about one key. Python keeps one dict per kind, each in its own
 * insertion order; the *_seq fields carry those orders (0 = not in that dict). */
typedef struct {
    char key[KEY];
    long long sale_seq;
    sale_t sale;
    enum status status;
    bool has_approval;
    approval_t approval;
    long long pending_seq;
    long long reversal_seq;
    sale_t rev_sale;
} entry_t;

typedef struct {
    char job_id[2 * KEY];
    char key[KEY];
    bool copy;
} job_t;

static posfw_config cfg;
static const char *flaw = "";
static size_t *slots; /* see find() */
static size_t n_slots;

static struct {
    enum state state;
    long long amount;
    bool in_sale;
    sale_t sale;
    posfw_message request;
    long long sends, in_progress_retries;
    const char *sale_timer;
    long long journal_len, epoch;
    char nonce[17];
    long long sale_no, last_closed_batch, open_batch_no, open_batch_count;
    entry_t *entries;
    size_t n_entries, cap_entries;
    long long seq;
    size_t n_pending, n_reversals;
    char reversal_key[KEY];
    long long reversal_tries;
    job_t *jobs;
    size_t n_jobs, cap_jobs;
    long long print_seq;
    char last_receipt_key[KEY];
    bool batch_wanted, has_batch;
    long long batch_no, batch_sale_no, batch_stan;
    bool has_batch_message;
    posfw_message batch_message;
    long long batch_sends;
    bool batch_resumed;
    bool batch_again; /* the cashier asked again while a close was under way */
} s;

static void *grow(void *ptr, size_t *cap, size_t need, size_t size) {
    if (need <= *cap) return ptr;
    size_t next = *cap ? *cap * 2 : 16;
    while (next < need) next *= 2;
    void *p = realloc(ptr, next * size);
    if (p == NULL) posfw_fail("out of memory (%zu x %zu bytes)", next, size);
    *cap = next;
    return p;
}

static void reset(void) {
    free(s.entries);
    free(s.jobs);
    free(s.batch_message.items);
    memset(&s, 0, sizeof s);
    s.sale_timer = "";
    s.open_batch_no = 1;
    if (n_slots) memset(slots, 0, n_slots * sizeof *slots);
}

/* ------------------------------------------------------------ entries */

/* Lookup by key: an open-addressing index (slot = entry index + 1) over the entries,
 * rebuilt when it fills or when a batch close prunes the entries. */
static size_t hash(const char *key) {
    size_t h = 1469598103934665603ULL;
    for (; *key; key++) h = (h ^ (unsigned char)*key) * 1099511628211ULL;
    return h;
}

static void index_rebuild(size_t need) {
    size_t want = 64;
    while (want < 2 * need) want *= 2;
    if (want != n_slots) {
        free(slots);
        slots = posfw_alloc(want, sizeof *slots);
        n_slots = want;
    }
    memset(slots, 0, n_slots * sizeof *slots);
    for (size_t i = 0; i < s.n_entries; i++) {
        size_t j = hash(s.entries[i].key) & (n_slots - 1);
        while (slots[j]) j = (j + 1) & (n_slots - 1);
        slots[j] = i + 1;
    }
}

static entry_t *find(const char *key) {
    if (!n_slots) return NULL;
    for (size_t j = hash(key) & (n_slots - 1); slots[j]; j = (j + 1) & (n_slots - 1))
        if (strcmp(s.entries[slots[j] - 1].key, key) == 0) return &s.entries[slots[j] - 1];
    return NULL;
}

static entry_t *get(const char *key) {
    entry_t *e = find(key);
    if (e) return e;
    s.entries = grow(s.entries, &s.cap_entries, s.n_entries + 1, sizeof *s.entries);
    e = &s.entries[s.n_entries++];
    memset(e, 0, sizeof *e);
    snprintf(e->key, sizeof e->key, "%s", key);
    if (2 * s.n_entries > n_slots) {
        index_rebuild(s.n_entries);
    } else {
        size_t j = hash(e->key) & (n_slots - 1);
        while (slots[j]) j = (j + 1) & (n_slots - 1);
        slots[j] = s.n_entries;
    }
    return e;
}

static void set_sale(const sale_t *sale) {
    entry_t *e = get(sale->key);
    if (!e->sale_seq) e->sale_seq = ++s.seq;
    e->sale = *sale;
}

static void set_pending(entry_t *e) {
    if (!e->pending_seq) {
        e->pending_seq = ++s.seq;
        s.n_pending++;
    }
}

static void clear_pending(entry_t *e) {
    if (e->pending_seq) {
        e->pending_seq = 0;
        s.n_pending--;
    }
}

static void set_reversal(const sale_t *sale) {
    entry_t *e = get(sale->key);
    if (!e->reversal_seq) {
        e->reversal_seq = ++s.seq;
        s.n_reversals++;
    }
    e->rev_sale = *sale;
}

static void clear_reversal(entry_t *e) {
    if (e->reversal_seq) {
        e->reversal_seq = 0;
        s.n_reversals--;
    }
}

typedef long long (*seq_of)(const entry_t *);
static long long sale_seq(const entry_t *e) { return e->sale_seq; }
static long long pending_seq(const entry_t *e) { return e->pending_seq; }
static long long reversal_seq(const entry_t *e) { return e->reversal_seq; }

static seq_of sort_by;
static int by_seq(const void *a, const void *b) {
    long long x = sort_by(*(entry_t *const *)a), y = sort_by(*(entry_t *const *)b);
    return (x > y) - (x < y);
}

/* The entries in one dict, in its insertion order. Caller frees. */
static entry_t **ordered(seq_of seq, size_t *n) {
    entry_t **out = posfw_alloc(s.n_entries + 1, sizeof *out);
    *n = 0;
    for (size_t i = 0; i < s.n_entries; i++)
        if (seq(&s.entries[i])) out[(*n)++] = &s.entries[i];
    sort_by = seq;
    qsort(out, *n, sizeof *out, by_seq);
    return out;
}

/* ------------------------------------------------------------ journal records */

static void journal(posfw_out *out, cJSON *record) {
    s.journal_len++;
    posfw_journal(out, record);
}

static cJSON *sale_record(const sale_t *sale) {
    cJSON *r = posfw_record("sale");
    posfw_rec_set_str(r, "key", sale->key);
    posfw_rec_set_int(r, "stan", sale->stan);
    posfw_rec_set_int(r, "amount", sale->amount);
    posfw_rec_set_str(r, "pan", sale->pan);
    posfw_rec_set_int(r, "sale_no", sale->sale_no);
    posfw_rec_set_int(r, "batch_no", sale->batch_no);
    return r;
}

static cJSON *approval_record(const char *key, const approval_t *a) {
    cJSON *r = posfw_record("approved");
    posfw_rec_set_str(r, "key", key);
    posfw_rec_set_str(r, "rrn", a->rrn);
    posfw_rec_set_str(r, "auth_code", a->auth_code);
    posfw_rec_set_int(r, "amount", a->amount);
    return r;
}

static cJSON *reversal_record(const sale_t *sale) {
    cJSON *r = posfw_record("reversal_pending");
    posfw_rec_set_str(r, "key", sale->key);
    posfw_rec_set_int(r, "stan", sale->stan);
    posfw_rec_set_int(r, "amount", sale->amount);
    return r;
}

static cJSON *key_record(const char *type, const char *key) {
    cJSON *r = posfw_record(type);
    posfw_rec_set_str(r, "key", key);
    return r;
}

/* ------------------------------------------------------------ helpers */

static long long stan_for(long long sale_no) { return (sale_no - 1) % STAN_MAX + 1; }

static const char *rc_text(const char *rc) {
    static const char *codes[][2] = {
        {"00", "APPROVED"},
        {"05", "DO NOT HONOUR"},
        {"12", "INVALID TRANSACTION"},
        {"09", "REQUEST IN PROGRESS"},
        {"13", "INVALID AMOUNT"},
        {"25", "UNABLE TO LOCATE ORIGINAL"},
        {"30", "FORMAT ERROR"},
        {"51", "INSUFFICIENT FUNDS"},
        {"63", "SECURITY VIOLATION (STALE TRANSMISSION TIME)"},
        {"91", "ISSUER UNAVAILABLE"},
        {"94", "DUPLICATE TRANSMISSION"},
        {"95", "RECONCILE ERROR"},
        {"96", "SYSTEM ERROR"},
    };
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (strcmp(codes[i][0], rc) == 0) return codes[i][1];
    return NULL;
}

static bool transient(const char *rc) {
    return !strcmp(rc, "91") || !strcmp(rc, "96") || !strcmp(rc, "30") || !strcmp(rc, "63");
}

static void pump_reversals(posfw_out *out);
static void maybe_start_batch(posfw_out *out);
static void print_receipt(posfw_out *out, const char *key, bool copy);

/* ------------------------------------------------------------ boot and replay */

static void replay_batch(const char *kind, const cJSON *r) {
    long long batch_no, sale_no, stan;
    if (!posfw_rec_get_int(r, "batch_no", &batch_no) || !posfw_rec_get_int(r, "sale_no", &sale_no))
        return;
    if (sale_no > s.sale_no) s.sale_no = sale_no;
    if (strcmp(kind, "batch_started") == 0) {
        if (batch_no > s.last_closed_batch && posfw_rec_get_int(r, "stan", &stan)) {
            s.has_batch = true;
            s.batch_no = batch_no;
            s.batch_sale_no = sale_no;
            s.batch_stan = stan;
        }
    } else {
        if (batch_no > s.last_closed_batch) s.last_closed_batch = batch_no;
        if (s.has_batch && s.batch_no <= batch_no) s.has_batch = false;
    }
}

static void replay(const cJSON *r) {
    char kind[32], key[KEY];
    if (!posfw_rec_get_str(r, "type", kind, sizeof kind)) return;
    if (!strcmp(kind, "batch_closed") || !strcmp(kind, "batch_started")) {
        replay_batch(kind, r);
        return;
    }
    if (!posfw_rec_get_str(r, "key", key, sizeof key)) return;
    if (!strcmp(kind, "sale")) {
        sale_t sale = {0};
        snprintf(sale.key, sizeof sale.key, "%s", key);
        if (!posfw_rec_get_int(r, "stan", &sale.stan) || !posfw_rec_get_int(r, "amount", &sale.amount) ||
            !posfw_rec_get_str(r, "pan", sale.pan, sizeof sale.pan) ||
            !posfw_rec_get_int(r, "sale_no", &sale.sale_no))
            return;
        if (cJSON_GetObjectItemCaseSensitive(r, "batch_no") && !posfw_rec_get_int(r, "batch_no", &sale.batch_no))
            return;
        set_sale(&sale);
        entry_t *e = get(key);
        if (e->status == ST_NONE) e->status = IN_FLIGHT;
        if (sale.sale_no > s.sale_no) s.sale_no = sale.sale_no;
    } else if (!strcmp(kind, "approved")) {
        approval_t a = {0};
        if (!posfw_rec_get_str(r, "rrn", a.rrn, sizeof a.rrn) ||
            !posfw_rec_get_str(r, "auth_code", a.auth_code, sizeof a.auth_code) ||
            !posfw_rec_get_int(r, "amount", &a.amount))
            return;
        entry_t *e = get(key);
        e->has_approval = true;
        e->approval = a;
        e->status = APPROVED;
        set_pending(e);
        snprintf(s.last_receipt_key, sizeof s.last_receipt_key, "%s", key);
    } else if (!strcmp(kind, "declined")) {
        get(key)->status = DECLINED;
    } else if (!strcmp(kind, "reversal_pending")) {
        entry_t *e = get(key);
        if (e->status != REVERSED && e->status != REVERSAL_MANUAL) {
            sale_t sale = {0};
            if (e->sale_seq) {
                sale = e->sale;
            } else {
                snprintf(sale.key, sizeof sale.key, "%s", key);
                if (!posfw_rec_get_int(r, "stan", &sale.stan) || !posfw_rec_get_int(r, "amount", &sale.amount))
                    return;
            }
            set_reversal(&sale);
            get(key)->status = REVERSING;
        }
    } else if (!strcmp(kind, "reversed")) {
        entry_t *e = get(key);
        e->status = REVERSED;
        clear_reversal(e);
    } else if (!strcmp(kind, "reversal_manual")) {
        entry_t *e = get(key);
        e->status = REVERSAL_MANUAL;
        clear_reversal(e);
    } else if (!strcmp(kind, "printed")) {
        entry_t *e = find(key);
        if (e) clear_pending(e);
    }
}

static long long first_open_batch_no(void) {
    if (s.last_closed_batch) return s.last_closed_batch + 1;
    if (s.has_batch) return s.batch_no;
    long long max = 0;
    for (size_t i = 0; i < s.n_entries; i++)
        if (s.entries[i].sale_seq && s.entries[i].sale.batch_no > max) max = s.entries[i].sale.batch_no;
    if (max) return max;
    if (s.nonce[0]) return (long long)(strtoull(s.nonce, NULL, 16) % BATCH_BASE_MAX * BATCH_NOS_PER_DEVICE + 1);
    return 1;
}

static void enqueue_reversal(posfw_out *out, const sale_t *sale) {
    set_reversal(sale);
    get(sale->key)->status = REVERSING;
    pump_reversals(out);
}

static void on_boot(const posfw_event *ev, posfw_out *out) {
    reset();
    int n = cJSON_GetArraySize(ev->journal);
    s.journal_len = s.epoch = n;
    size_t len = strlen(ev->nonce);
    bool hex = len > 0 && len <= 16 && strspn(ev->nonce, "0123456789abcdef") == len;
    snprintf(s.nonce, sizeof s.nonce, "%s", hex ? ev->nonce : "");
    const cJSON *record;
    cJSON_ArrayForEach(record, ev->journal) {
        if (cJSON_IsObject(record)) replay(record);
    }
    s.open_batch_no = first_open_batch_no();
    for (size_t i = 0; i < s.n_entries; i++)
        if (s.entries[i].sale_seq && s.entries[i].sale.batch_no == s.open_batch_no) s.open_batch_count++;
    /* Recover: unresolved sales are reversed; pending receipts printed again. */
    size_t k;
    entry_t **sales = ordered(sale_seq, &k);
    sale_t *unresolved = posfw_alloc(k + 1, sizeof *unresolved);
    size_t n_unresolved = 0;
    for (size_t i = 0; i < k; i++)
        if (sales[i]->status == IN_FLIGHT) unresolved[n_unresolved++] = sales[i]->sale;
    free(sales);
    for (size_t i = 0; i < n_unresolved; i++) {
        journal(out, reversal_record(&unresolved[i]));
        posfw_display(out, "failed", "LAST SALE NOT COMPLETED - REVERSED", "");
        enqueue_reversal(out, &unresolved[i]);
    }
    free(unresolved);
    entry_t **pending = ordered(pending_seq, &k);
    char (*keys)[KEY] = posfw_alloc(k + 1, sizeof *keys);
    for (size_t i = 0; i < k; i++) snprintf(keys[i], KEY, "%s", pending[i]->key);
    free(pending);
    for (size_t i = 0; i < k; i++) {
        const entry_t *e = find(keys[i]);
        journal(out, key_record("receipt_pending", keys[i]));
        posfw_display(out, "approved", "LAST SALE APPROVED", e->approval.rrn);
        posfw_display(out, "receipt-pending", "RECEIPT PENDING", e->approval.rrn);
        print_receipt(out, keys[i], false);
    }
    free(keys);
    pump_reversals(out);
    if (s.has_batch) {
        s.batch_wanted = true;
        s.batch_resumed = true;
        maybe_start_batch(out);
    }
}

/* ------------------------------------------------------------ sales */

static const char *blocked_reason(void) {
    if (s.batch_wanted || s.has_batch) return "BATCH CLOSING - TRY LATER";
    if (s.n_reversals >= REVERSALS_QUEUED_MAX) return "REVERSALS PENDING - TRY LATER";
    if (s.n_pending >= RECEIPTS_PENDING_MAX) return "RECEIPTS PENDING - REPRINT FIRST";
    if (s.open_batch_count >= SALES_PER_BATCH_MAX) return "BATCH FULL - CLOSE BATCH";
    return NULL;
}

static void start_sale(posfw_out *out, long long amount, const char *pan) {
    s.state = IDLE;
    const char *blocked = blocked_reason();
    if (blocked) {
        posfw_display(out, "declined", blocked, "");
        return;
    }
    long long sale_no = ++s.sale_no;
    sale_t sale = {0};
    if (s.nonce[0])
        snprintf(sale.key, sizeof sale.key, "%s-%s-%010lld", cfg.terminal_id, s.nonce, sale_no);
    else
        snprintf(sale.key, sizeof sale.key, "%s-%010lld", cfg.terminal_id, sale_no);
    sale.stan = stan_for(sale_no);
    sale.amount = amount;
    snprintf(sale.pan, sizeof sale.pan, "%s", pan);
    sale.sale_no = sale_no;
    sale.batch_no = s.open_batch_no;
    set_sale(&sale);
    get(sale.key)->status = IN_FLIGHT;
    s.open_batch_count++;
    s.in_sale = true;
    s.sale = sale;
    s.state = AUTHORISING;
    s.sends = 1;
    s.in_progress_retries = 0;
    s.sale_timer = RESPONSE_TIMER;
    posfw_message_init(&s.request, "0200");
    snprintf(s.request.terminal_id, POSFW_STR, "%s", cfg.terminal_id);
    snprintf(s.request.merchant_id, POSFW_STR, "%s", cfg.merchant_id);
    s.request.stan = sale.stan;
    snprintf(s.request.pan, POSFW_STR, "%s", pan);
    s.request.amount = amount;
    snprintf(s.request.idem_key, POSFW_STR, "%s", sale.key);
    journal(out, sale_record(&sale)); /* the key exists durably before anything is sent */
    posfw_display(out, "pending", "PROCESSING", "");
    posfw_send(out, &s.request);
    posfw_set_timer(out, RESPONSE_TIMER, cfg.response_timeout_ms);
}

static void close_sale(posfw_out *out) {
    const char *timer = s.sale_timer;
    s.in_sale = false;
    s.sale_timer = "";
    s.state = IDLE;
    if (timer[0]) posfw_cancel_timer(out, timer);
}

static void after_sale(posfw_out *out) {
    if (s.batch_wanted) maybe_start_batch(out);
}

static void decline(posfw_out *out, const sale_t *sale, const char *rc) {
    get(sale->key)->status = DECLINED;
    cJSON *r = key_record("declined", sale->key);
    posfw_rec_set_str(r, "rc", rc);
    journal(out, r);
    char text[128];
    const char *reason = rc_text(rc);
    if (reason)
        snprintf(text, sizeof text, "DECLINED - %s", reason);
    else { /* Python's f"code {rc}".upper() */
        snprintf(text, sizeof text, "DECLINED - CODE %s", rc);
        for (char *c = text; *c; c++)
            if (*c >= 'a' && *c <= 'z') *c = (char)(*c - 'a' + 'A');
    }
    posfw_display(out, "declined", text, "");
}

static void give_up(posfw_out *out) {
    if (!s.in_sale) return;
    sale_t sale = s.sale;
    close_sale(out);
    journal(out, reversal_record(&sale));
    posfw_display(out, "failed", "NOT CHARGED - REVERSING", "");
    enqueue_reversal(out, &sale);
    after_sale(out);
}

static void resend(posfw_out *out) {
    s.sale_timer = RESPONSE_TIMER;
    posfw_message again = s.request;
    again.repeat = true;
    posfw_send(out, &again);
    posfw_set_timer(out, RESPONSE_TIMER, cfg.response_timeout_ms);
}

static void naive_retry(posfw_out *out) {
    /* The planted flaw: a new key and a new STAN for the same purchase. */
    sale_t sale = s.sale;
    if (s.sends < cfg.max_sends) {
        long long sends = s.sends;
        start_sale(out, sale.amount, sale.pan);
        s.sends = sends + 1;
        return;
    }
    close_sale(out);
    get(sale.key)->status = DECLINED;
    cJSON *r = key_record("declined", sale.key);
    posfw_rec_set_str(r, "rc", "timeout");
    journal(out, r);
    posfw_display(out, "failed", "TIMEOUT", "");
}

/* The outcome is unknown: ask the host what became of the sale before reversing. */
static void inquire(posfw_out *out) {
    s.sale_timer = INQUIRY_TIMER;
    posfw_message q;
    posfw_message_init(&q, "0600");
    snprintf(q.terminal_id, POSFW_STR, "%s", cfg.terminal_id);
    snprintf(q.merchant_id, POSFW_STR, "%s", cfg.merchant_id);
    q.stan = s.sale.stan;
    snprintf(q.pan, POSFW_STR, "%s", s.sale.pan);
    q.amount = s.request.amount;
    q.orig_stan = s.sale.stan;
    snprintf(q.orig_key, POSFW_STR, "%s", s.sale.key);
    posfw_send(out, &q);
    posfw_set_timer(out, INQUIRY_TIMER, cfg.response_timeout_ms);
}

static void on_response_timeout(posfw_out *out) {
    if (strcmp(flaw, "naive-retry") == 0) {
        naive_retry(out);
        return;
    }
    if (s.sends < cfg.max_sends) {
        s.sends++;
        resend(out);
        return;
    }
    if (cfg.status_inquiry)
        inquire(out);
    else
        give_up(out);
}

static void on_approved(posfw_out *out, const sale_t *sale, const posfw_message *msg) {
    entry_t *e = get(sale->key);
    snprintf(e->approval.rrn, sizeof e->approval.rrn, "%s", msg->rrn);
    snprintf(e->approval.auth_code, sizeof e->approval.auth_code, "%s", msg->auth_code);
    e->approval.amount = msg->amount > 0 ? msg->amount : sale->amount;
    e->has_approval = true;
    e->status = APPROVED;
    set_pending(e);
    snprintf(s.last_receipt_key, sizeof s.last_receipt_key, "%s", sale->key);
    journal(out, approval_record(sale->key, &e->approval));
    posfw_display(out, "approved", "APPROVED", e->approval.rrn);
    print_receipt(out, sale->key, false);
}

static void on_purchase_response(posfw_out *out, const posfw_message *msg) {
    sale_t sale = s.sale;
    const char *rc = msg->rc;
    if (!strcmp(rc, "09")) {
        if (++s.in_progress_retries > IN_PROGRESS_RETRIES_MAX) {
            give_up(out);
            return;
        }
        s.sale_timer = IN_PROGRESS_TIMER;
        posfw_cancel_timer(out, RESPONSE_TIMER);
        posfw_set_timer(out, IN_PROGRESS_TIMER, IN_PROGRESS_RETRY_DELAY_MS);
        return;
    }
    if (transient(rc)) {
        if (s.sends < cfg.max_sends) {
            s.sends++;
            resend(out);
            return;
        }
        bool multiple_sends = s.sends > 1;
        close_sale(out);
        /* The reversal record goes before the decline's: a power cut between them
         * must not leave a declined sale whose charged first copy nobody reverses. */
        if (multiple_sends)
            journal(out, reversal_record(&sale));
        decline(out, &sale, rc);
        if (multiple_sends)
            enqueue_reversal(out, &sale);
        after_sale(out);
        return;
    }
    if (!strcmp(rc, "94")) {
        give_up(out);
        return;
    }
    close_sale(out);
    if (!strcmp(rc, "00"))
        on_approved(out, &sale, msg);
    else
        decline(out, &sale, rc);
    after_sale(out);
}

/* A 0610 about the sale in flight: approved completes it, a stored decline (05, 13,
 * 51) declines it; anything else (not found, in progress, closed) reverses. */
static void on_inquiry_answer(posfw_out *out, const posfw_message *msg) {
    if (strcmp(s.sale_timer, INQUIRY_TIMER)) return;
    const char *rc = msg->rc;
    sale_t sale = s.sale;
    bool approved = !strcmp(rc, "00");
    if (approved || !strcmp(rc, "05") || !strcmp(rc, "13") || !strcmp(rc, "51")) {
        close_sale(out);
        if (approved)
            on_approved(out, &sale, msg);
        else
            decline(out, &sale, rc);
        after_sale(out);
        return;
    }
    give_up(out);
}

static bool matches_sale(const posfw_message *msg) {
    const posfw_message *r = &s.request;
    return msg->stan == s.sale.stan && !strcmp(msg->idem_key, s.sale.key) && !strcmp(msg->pan, r->pan) &&
           msg->amount == r->amount && !strcmp(msg->processing_code, r->processing_code) &&
           !strcmp(msg->currency, r->currency);
}

/* ------------------------------------------------------------ reversals */

static void send_reversal(posfw_out *out) {
    const entry_t *e = find(s.reversal_key);
    sale_t sale = e->rev_sale;
    s.reversal_tries++;
    posfw_message msg;
    posfw_message_init(&msg, "0400");
    snprintf(msg.terminal_id, POSFW_STR, "%s", cfg.terminal_id);
    snprintf(msg.merchant_id, POSFW_STR, "%s", cfg.merchant_id);
    msg.stan = sale.stan;
    snprintf(msg.pan, POSFW_STR, "%s", sale.pan);
    msg.amount = sale.amount;
    msg.orig_stan = sale.stan;
    snprintf(msg.orig_key, POSFW_STR, "%s", sale.key);
    msg.repeat = s.reversal_tries > 1;
    long long delay = 0;
    if (cfg.n_reversal_backoff) {
        size_t i = (size_t)s.reversal_tries;
        if (i > cfg.n_reversal_backoff - 1) i = cfg.n_reversal_backoff - 1;
        delay = cfg.reversal_backoff_ms[i];
    }
    posfw_send(out, &msg);
    posfw_set_timer(out, REVERSAL_TIMER, delay ? delay : cfg.response_timeout_ms);
}

static void pump_reversals(posfw_out *out) {
    if (s.reversal_key[0]) return;
    size_t n;
    entry_t **queue = ordered(reversal_seq, &n);
    if (n) snprintf(s.reversal_key, sizeof s.reversal_key, "%s", queue[0]->key);
    free(queue);
    if (!n) return;
    s.reversal_tries = 0;
    send_reversal(out);
}

static void after_reversal(posfw_out *out) {
    pump_reversals(out);
    if (s.batch_wanted) maybe_start_batch(out);
}

static void reversal_manual(posfw_out *out, const char *key_in) {
    char key[KEY];
    snprintf(key, sizeof key, "%s", key_in);
    if (!strcmp(key, s.reversal_key)) {
        s.reversal_key[0] = '\0';
        posfw_cancel_timer(out, REVERSAL_TIMER);
    }
    entry_t *e = get(key);
    clear_reversal(e);
    e->status = REVERSAL_MANUAL;
    journal(out, key_record("reversal_manual", key));
    posfw_display(out, "prompt", "REVERSAL NEEDS MANUAL HANDLING", "");
    after_reversal(out);
}

static void on_reversal_response(posfw_out *out, const posfw_message *msg) {
    entry_t *e = find(msg->orig_key);
    if (!e || !e->reversal_seq || msg->orig_stan != e->rev_sale.stan || msg->stan != e->rev_sale.stan ||
        msg->amount != e->rev_sale.amount)
        return;
    char key[KEY];
    snprintf(key, sizeof key, "%s", e->key);
    if (!strcmp(msg->rc, "12")) {
        reversal_manual(out, key);
        return;
    }
    /* 25: the host holds no such sale and keeps a tombstone, so it is never charged. */
    if (strcmp(msg->rc, "00") && strcmp(msg->rc, "25")) return;
    clear_reversal(e);
    e->status = REVERSED;
    journal(out, key_record("reversed", key));
    if (!strcmp(key, s.reversal_key)) {
        s.reversal_key[0] = '\0';
        posfw_cancel_timer(out, REVERSAL_TIMER);
    }
    after_reversal(out);
}

/* ------------------------------------------------------------ receipts */

static void print_receipt(posfw_out *out, const char *key, bool copy) {
    const entry_t *e = find(key);
    s.print_seq++;
    s.jobs = grow(s.jobs, &s.cap_jobs, s.n_jobs + 1, sizeof *s.jobs);
    job_t *job = &s.jobs[s.n_jobs++];
    snprintf(job->job_id, sizeof job->job_id, "%s/%lld.%lld", key, s.epoch, s.print_seq);
    snprintf(job->key, sizeof job->key, "%s", key);
    job->copy = copy;
    posfw_receipt r = {0};
    snprintf(r.status, sizeof r.status, "approved");
    r.amount = e->approval.amount;
    snprintf(r.rrn, sizeof r.rrn, "%s", e->approval.rrn);
    if (e->sale_seq) {
        r.stan = e->sale.stan;
        size_t len = strlen(e->sale.pan);
        snprintf(r.pan_last4, sizeof r.pan_last4, "%s", e->sale.pan + (len > 4 ? len - 4 : 0));
    }
    snprintf(r.auth_code, sizeof r.auth_code, "%s", e->approval.auth_code);
    snprintf(r.idem_key, sizeof r.idem_key, "%s", key);
    r.copy = copy;
    posfw_print(out, job->job_id, &r);
}

static void on_print_finished(posfw_out *out, const posfw_event *ev) {
    size_t i = 0;
    while (i < s.n_jobs && strcmp(s.jobs[i].job_id, ev->job_id)) i++;
    if (i == s.n_jobs) return;
    job_t job = s.jobs[i];
    memmove(&s.jobs[i], &s.jobs[i + 1], (s.n_jobs - i - 1) * sizeof *s.jobs);
    s.n_jobs--;
    entry_t *e = find(job.key);
    bool pending = e && e->pending_seq;
    if (!strcmp(ev->status, "ok")) {
        if (!job.copy && pending) {
            clear_pending(e);
            journal(out, key_record("printed", job.key));
        }
        return;
    }
    if (job.copy || !pending) {
        posfw_display(out, "prompt", "PRINT FAILED", "");
        return;
    }
    posfw_display(out, "receipt-pending", "RECEIPT PENDING - PRESS REPRINT", e->approval.rrn);
}

static void on_reprint(posfw_out *out) {
    size_t n;
    entry_t **pending = ordered(pending_seq, &n);
    for (size_t i = 0; i < n; i++) {
        bool printing = false;
        for (size_t j = 0; j < s.n_jobs && !printing; j++) printing = !strcmp(s.jobs[j].key, pending[i]->key);
        if (!printing) {
            char key[KEY];
            snprintf(key, sizeof key, "%s", pending[i]->key);
            free(pending);
            print_receipt(out, key, false);
            return;
        }
    }
    free(pending);
    if (n) {
        posfw_display(out, "prompt", "PRINTING", "");
        return;
    }
    const entry_t *e = s.last_receipt_key[0] ? find(s.last_receipt_key) : NULL;
    if (!e || !e->has_approval) {
        posfw_display(out, "prompt", "NO RECEIPT", "");
        return;
    }
    for (size_t j = 0; j < s.n_jobs; j++) {
        if (s.jobs[j].copy) {
            posfw_display(out, "prompt", "PRINTING", "");
            return;
        }
    }
    print_receipt(out, s.last_receipt_key, true);
}

/* ------------------------------------------------------------ batch close */

static void send_batch(posfw_out *out) {
    if (!s.has_batch_message) return;
    bool repeat = s.batch_resumed || s.batch_sends > 0;
    s.batch_sends++;
    posfw_message msg = s.batch_message;
    msg.repeat = repeat;
    posfw_send(out, &msg);
    posfw_set_timer(out, BATCH_TIMER, cfg.response_timeout_ms);
}

static void maybe_start_batch(posfw_out *out) {
    if (!s.batch_wanted || s.batch_sends || s.state == AUTHORISING || s.n_reversals) return;
    if (!s.has_batch) {
        s.sale_no++;
        s.has_batch = true;
        s.batch_no = s.open_batch_no;
        s.batch_sale_no = s.sale_no;
        s.batch_stan = stan_for(s.sale_no);
        cJSON *r = posfw_record("batch_started");
        posfw_rec_set_int(r, "batch_no", s.batch_no);
        posfw_rec_set_int(r, "sale_no", s.batch_sale_no);
        posfw_rec_set_int(r, "stan", s.batch_stan);
        journal(out, r);
    }
    size_t n;
    entry_t **sales = ordered(sale_seq, &n);
    free(s.batch_message.items);
    posfw_message *m = &s.batch_message;
    posfw_message_init(m, "0500");
    m->items = posfw_alloc(n + 1, sizeof *m->items);
    for (size_t i = 0; i < n; i++) {
        const entry_t *e = sales[i];
        if (e->sale.batch_no == s.open_batch_no && e->status == APPROVED && e->has_approval) {
            posfw_item *it = &m->items[m->n_items++];
            it->stan = e->sale.stan;
            it->amount = e->approval.amount;
            snprintf(it->rrn, sizeof it->rrn, "%s", e->approval.rrn);
            m->debit_amount += e->approval.amount;
        }
    }
    free(sales);
    snprintf(m->terminal_id, POSFW_STR, "%s", cfg.terminal_id);
    snprintf(m->merchant_id, POSFW_STR, "%s", cfg.merchant_id);
    m->stan = s.batch_stan;
    m->batch_no = s.batch_no;
    m->debit_count = (long long)m->n_items;
    s.has_batch_message = true;
    posfw_display(out, "prompt", "BATCH CLOSING", "");
    send_batch(out);
}

static void on_batch_timeout(posfw_out *out) {
    if (!s.batch_sends) return;
    if (s.batch_sends < BATCH_SENDS_MAX) {
        send_batch(out);
        return;
    }
    if (s.batch_again) { /* asked again during these sends: a fresh round */
        s.batch_again = false;
        s.batch_sends = 0;
        s.batch_resumed = true;
        send_batch(out);
        return;
    }
    s.batch_wanted = false;
    s.batch_sends = 0;
    s.batch_resumed = true;
    posfw_display(out, "prompt", "BATCH NOT CONFIRMED - CLOSE AGAIN", "");
}

static void on_batch_response(posfw_out *out, const posfw_message *msg) {
    const posfw_message *sent = &s.batch_message;
    if (!s.has_batch || !s.has_batch_message || !s.batch_sends || msg->batch_no != s.batch_no ||
        msg->stan != s.batch_stan || msg->debit_count != sent->debit_count ||
        msg->debit_amount != sent->debit_amount || msg->credit_count != sent->credit_count ||
        msg->credit_amount != sent->credit_amount || (strcmp(msg->rc, "00") && strcmp(msg->rc, "95")))
        return;
    posfw_cancel_timer(out, BATCH_TIMER);
    long long trim = s.journal_len;
    size_t n;
    entry_t **pending = ordered(pending_seq, &n);
    for (size_t i = 0; i < n; i++) {
        if (pending[i]->sale_seq) journal(out, sale_record(&pending[i]->sale));
        journal(out, approval_record(pending[i]->key, &pending[i]->approval));
    }
    free(pending);
    entry_t **queue = ordered(reversal_seq, &n);
    for (size_t i = 0; i < n; i++) {
        if (queue[i]->rev_sale.sale_no) journal(out, sale_record(&queue[i]->rev_sale));
        journal(out, reversal_record(&queue[i]->rev_sale));
    }
    free(queue);
    cJSON *r = posfw_record("batch_closed");
    posfw_rec_set_int(r, "batch_no", s.batch_no);
    posfw_rec_set_str(r, "rc", msg->rc);
    posfw_rec_set_int(r, "sale_no", s.sale_no);
    journal(out, r);
    posfw_trim(out, trim);
    s.journal_len -= trim;
    /* Prune memory to match the journal: keep unfinished work and the last receipt. */
    size_t kept = 0;
    for (size_t i = 0; i < s.n_entries; i++) {
        entry_t *e = &s.entries[i];
        bool keep = e->pending_seq || e->reversal_seq || !strcmp(e->key, s.last_receipt_key);
        if (keep) s.entries[kept++] = *e;
    }
    s.n_entries = kept;
    index_rebuild(kept);
    s.last_closed_batch = s.batch_no;
    s.open_batch_no = s.batch_no + 1;
    s.open_batch_count = 0;
    s.has_batch = false;
    s.has_batch_message = false;
    s.batch_wanted = false;
    s.batch_again = false;
    s.batch_sends = 0;
    s.batch_resumed = false;
    posfw_display(out, "prompt", strcmp(msg->rc, "00") ? "BATCH MISMATCH" : "BATCH OK", "");
}

/* ------------------------------------------------------------ events */

static void on_message(posfw_out *out, const posfw_event *ev) {
    const posfw_message *msg = &ev->message;
    if (!ev->mac_ok || strcmp(msg->terminal_id, cfg.terminal_id) || strcmp(msg->merchant_id, cfg.merchant_id))
        return; /* unsigned or forged: never acted on */
    if (!strcmp(msg->mti, "0210")) {
        if (s.state == AUTHORISING && s.in_sale && matches_sale(msg)) on_purchase_response(out, msg);
        return; /* a duplicate, or late after a timeout: never an approval now */
    }
    if (!strcmp(msg->mti, "0410")) on_reversal_response(out, msg);
    if (!strcmp(msg->mti, "0610")) {
        if (s.state == AUTHORISING && s.in_sale && !strcmp(msg->orig_key, s.sale.key) &&
            msg->stan == s.sale.stan && msg->amount == s.request.amount)
            on_inquiry_answer(out, msg);
        return;
    }
    if (!strcmp(msg->mti, "0510")) on_batch_response(out, msg);
}

static void on_timer(posfw_out *out, const char *name) {
    if (!strcmp(name, RESPONSE_TIMER) || !strcmp(name, IN_PROGRESS_TIMER)) {
        if (s.state != AUTHORISING || strcmp(s.sale_timer, name)) return; /* stale */
        if (!strcmp(name, RESPONSE_TIMER))
            on_response_timeout(out);
        else
            resend(out);
    } else if (!strcmp(name, INQUIRY_TIMER)) {
        if (s.state != AUTHORISING || strcmp(s.sale_timer, name)) return; /* stale */
        give_up(out); /* no answer to the inquiry either: reverse */
    } else if (!strcmp(name, REVERSAL_TIMER)) {
        if (!s.reversal_key[0]) return;
        if (s.reversal_tries < cfg.reversal_max_tries)
            send_reversal(out);
        else
            reversal_manual(out, s.reversal_key);
    } else if (!strcmp(name, BATCH_TIMER)) {
        on_batch_timeout(out);
    }
}

static void handle(const posfw_event *ev, posfw_out *out) {
    switch (ev->type) {
    case POSFW_BOOT:
        on_boot(ev, out);
        break;
    case POSFW_AMOUNT_KEYED:
        if (s.state == AUTHORISING) {
            posfw_display(out, "prompt", "BUSY", "");
        } else if (!ev->amount_is_int || ev->amount <= 0 || ev->amount > cfg.amount_max) {
            s.state = IDLE;
            posfw_display(out, "declined", "INVALID AMOUNT", "");
        } else {
            s.amount = ev->amount;
            s.state = AMOUNT_ENTERED;
            posfw_display(out, "prompt", "CONFIRM AMOUNT", "");
        }
        break;
    case POSFW_CONFIRM:
        if (s.state == AMOUNT_ENTERED) {
            s.state = AWAITING_CARD;
            posfw_display(out, "prompt", "PRESENT CARD", "");
        }
        break;
    case POSFW_CANCEL:
        if (s.state == AMOUNT_ENTERED || s.state == AWAITING_CARD) {
            s.state = IDLE;
            posfw_display(out, "failed", "CANCELLED - NOT CHARGED", "");
        }
        break;
    case POSFW_CARD:
        if (s.state == AWAITING_CARD) {
            if (!ev->pan[0])
                posfw_display(out, "prompt", "TRY AGAIN", "");
            else
                start_sale(out, s.amount, ev->pan);
        }
        break;
    case POSFW_MESSAGE:
        on_message(out, ev);
        break;
    case POSFW_TIMER:
        on_timer(out, ev->name);
        break;
    case POSFW_PRINT_FINISHED:
        on_print_finished(out, ev);
        break;
    case POSFW_REPRINT:
        on_reprint(out);
        break;
    case POSFW_BATCH_CLOSE:
        if (s.batch_wanted) {
            s.batch_again = true; /* if its sends run out, start over rather than drop it */
            posfw_display(out, "prompt", "BATCH IN PROGRESS", "");
            break;
        }
        s.batch_wanted = true;
        if (!s.batch_sends && s.state != AUTHORISING && !s.n_reversals) {
            maybe_start_batch(out);
        } else {
            posfw_display(out, "prompt", "BATCH WAITING", "");
        }
        break;
    default:
        break;
    }
}

static void init(const posfw_config *config) {
    cfg = *config;
    reset();
}

int main(void) {
#ifdef POSFW_FLAW
    flaw = POSFW_FLAW;
#endif
    posfw_firmware fw = {
        .name = flaw[0] ? "firmware-c (flawed)" : "firmware-c",
        .version = "1.0",
        .init = init,
        .handle = handle,
    };
    return posfw_main(&fw);
}

/* posfw.c: the exec: pipe protocol loop and codecs (see posfw.h). */
#define _POSIX_C_SOURCE 200809L
#include "posfw.h"

#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct posfw_out {
    cJSON *effects;
};

/* Where the loop is, for error messages: input line number and event number. */
static unsigned long long at_line;
static long long at_event = -1;

void posfw_log(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("posfw: ", stderr);
    if (at_event >= 0)
        fprintf(stderr, "event %lld: ", at_event);
    else if (at_line)
        fprintf(stderr, "line %llu: ", at_line);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

POSFW_NORETURN void posfw_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("posfw: ", stderr);
    if (at_event >= 0)
        fprintf(stderr, "event %lld: ", at_event);
    else if (at_line)
        fprintf(stderr, "line %llu: ", at_line);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static void die(const char *what) { posfw_fail("%s", what); }

void *posfw_alloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL) posfw_fail("out of memory (%zu x %zu bytes)", n, size);
    return p;
}

/* The raw line being decoded: cJSON forgets how a number was written (5 or 5.0). */
static const char *raw_line;

/* Was `"key":` in the raw line written as an integer (no '.', 'e', 'E')? For events
 * whose only number field is `key` and whose strings cannot contain `"key":`. */
static bool raw_is_int(const char *key) {
    char pat[40];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = raw_line ? strstr(raw_line, pat) : NULL;
    if (p == NULL) return false;
    p += strlen(pat);
    p += strspn(p, " \t");
    size_t len = strspn(p, "-+0123456789.eE");
    return len > 0 && memchr(p, '.', len) == NULL && memchr(p, 'e', len) == NULL &&
           memchr(p, 'E', len) == NULL;
}

/* A JSON number as a long long, if it is an integer a double holds exactly
 * (|x| <= 2^53: cJSON keeps numbers as doubles). Anything else is refused rather
 * than rounded or cast out of range (undefined behaviour in C). */
static bool exact_int(const cJSON *item, long long *value) {
    if (!cJSON_IsNumber(item)) return false;
    double d = item->valuedouble;
    if (!isfinite(d) || fabs(d) > POSFW_INT_EXACT_MAX || d != floor(d)) return false;
    *value = (long long)d;
    return true;
}

static cJSON *int_node(long long value) {
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", value); /* exact: cJSON numbers are doubles */
    cJSON *node = cJSON_CreateRaw(buf);
    if (node == NULL) die("out of memory");
    return node;
}

static void add(cJSON *obj, const char *key, cJSON *value) {
    if (value == NULL || !cJSON_AddItemToObject(obj, key, value)) die("out of memory");
}

static void copy_str(char *dst, size_t size, const char *src) {
    snprintf(dst, size, "%s", src ? src : "");
}

/* ------------------------------------------------------------ reading */

static bool get_int(const cJSON *obj, const char *key, long long *value) {
    return exact_int(cJSON_GetObjectItemCaseSensitive(obj, key), value);
}

static void get_str(const cJSON *obj, const char *key, char *buf, size_t size) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    copy_str(buf, size, cJSON_IsString(item) ? item->valuestring : "");
}

void posfw_message_init(posfw_message *msg, const char *mti) {
    memset(msg, 0, sizeof *msg);
    copy_str(msg->mti, sizeof msg->mti, mti);
    copy_str(msg->processing_code, sizeof msg->processing_code, "000000");
    copy_str(msg->currency, sizeof msg->currency, "978");
}

static void read_message(const cJSON *m, posfw_message *msg) {
    char mti[8];
    get_str(m, "mti", mti, sizeof mti);
    posfw_message_init(msg, mti);
    get_str(m, "terminal_id", msg->terminal_id, sizeof msg->terminal_id);
    get_str(m, "merchant_id", msg->merchant_id, sizeof msg->merchant_id);
    get_int(m, "stan", &msg->stan);
    get_str(m, "pan", msg->pan, sizeof msg->pan);
    if (cJSON_GetObjectItemCaseSensitive(m, "processing_code"))
        get_str(m, "processing_code", msg->processing_code, sizeof msg->processing_code);
    get_int(m, "amount", &msg->amount);
    if (cJSON_GetObjectItemCaseSensitive(m, "currency"))
        get_str(m, "currency", msg->currency, sizeof msg->currency);
    get_str(m, "rrn", msg->rrn, sizeof msg->rrn);
    get_str(m, "rc", msg->rc, sizeof msg->rc);
    get_str(m, "auth_code", msg->auth_code, sizeof msg->auth_code);
    get_str(m, "idem_key", msg->idem_key, sizeof msg->idem_key);
    msg->repeat = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m, "repeat"));
    get_int(m, "orig_stan", &msg->orig_stan);
    get_str(m, "orig_key", msg->orig_key, sizeof msg->orig_key);
    get_int(m, "debit_count", &msg->debit_count);
    get_int(m, "debit_amount", &msg->debit_amount);
    get_int(m, "credit_count", &msg->credit_count);
    get_int(m, "credit_amount", &msg->credit_amount);
    get_int(m, "batch_no", &msg->batch_no);
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(m, "items");
    int n = cJSON_IsArray(items) ? cJSON_GetArraySize(items) : 0;
    if (n > 0) {
        msg->items = posfw_alloc((size_t)n, sizeof *msg->items);
        const cJSON *it;
        cJSON_ArrayForEach(it, items) {
            posfw_item *item = &msg->items[msg->n_items++];
            const cJSON *a = cJSON_GetArrayItem(it, 0), *b = cJSON_GetArrayItem(it, 1),
                        *c = cJSON_GetArrayItem(it, 2);
            if (!exact_int(a, &item->stan)) item->stan = 0;
            if (!exact_int(b, &item->amount)) item->amount = 0;
            copy_str(item->rrn, sizeof item->rrn, cJSON_IsString(c) ? c->valuestring : "");
        }
    }
}

static void read_config(const cJSON *c, posfw_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    get_str(c, "terminal_id", cfg->terminal_id, sizeof cfg->terminal_id);
    get_str(c, "merchant_id", cfg->merchant_id, sizeof cfg->merchant_id);
    get_int(c, "response_timeout_ms", &cfg->response_timeout_ms);
    get_int(c, "max_sends", &cfg->max_sends);
    get_int(c, "reversal_max_tries", &cfg->reversal_max_tries);
    get_int(c, "debounce_ms", &cfg->debounce_ms);
    get_int(c, "amount_max", &cfg->amount_max);
    const cJSON *inquiry = cJSON_GetObjectItemCaseSensitive(c, "status_inquiry");
    cfg->status_inquiry = !cJSON_IsFalse(inquiry); /* absent (an older harness): true */
    static cJSON *extra;
    cJSON_Delete(extra);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(c, "extra");
    extra = cJSON_IsObject(e) ? cJSON_Duplicate(e, true) : cJSON_CreateObject();
    if (extra == NULL) die("out of memory");
    cfg->extra = extra;
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(c, "reversal_backoff_ms"), *it;
    cJSON_ArrayForEach(it, b) {
        long long ms;
        if (cfg->n_reversal_backoff == POSFW_BACKOFF_MAX)
            posfw_fail("hello: config.reversal_backoff_ms has over %d steps", POSFW_BACKOFF_MAX);
        if (!exact_int(it, &ms)) posfw_fail("hello: config.reversal_backoff_ms: not an integer");
        cfg->reversal_backoff_ms[cfg->n_reversal_backoff++] = ms;
    }
}

static posfw_event_type event_type(const char *type) {
    static const struct {
        const char *name;
        posfw_event_type type;
    } names[] = {
        {"Boot", POSFW_BOOT},
        {"AmountKeyed", POSFW_AMOUNT_KEYED},
        {"ConfirmPressed", POSFW_CONFIRM},
        {"CancelPressed", POSFW_CANCEL},
        {"CardPresented", POSFW_CARD},
        {"MessageReceived", POSFW_MESSAGE},
        {"TimerExpired", POSFW_TIMER},
        {"PrintFinished", POSFW_PRINT_FINISHED},
        {"ReprintRequested", POSFW_REPRINT},
        {"BatchCloseRequested", POSFW_BATCH_CLOSE},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(names[i].name, type) == 0) return names[i].type;
    return POSFW_UNKNOWN;
}

static void read_event(const cJSON *obj, posfw_event *ev) {
    memset(ev, 0, sizeof *ev);
    if (!get_int(obj, "n", &ev->n) || ev->n < 1) posfw_fail("n: missing or not a positive integer");
    char type[32];
    get_str(obj, "type", type, sizeof type);
    ev->type = event_type(type);
    switch (ev->type) {
    case POSFW_BOOT:
        ev->journal = cJSON_GetObjectItemCaseSensitive(obj, "journal");
        if (!cJSON_IsArray(ev->journal)) posfw_fail("event %lld: Boot.journal: missing or not a list", ev->n);
        get_str(obj, "nonce", ev->nonce, sizeof ev->nonce);
        break;
    case POSFW_AMOUNT_KEYED: {
        /* Only an integer is an amount: 5.0, "5" or true are not (nor one too
         * large to read exactly, far above any amount limit). */
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(obj, "amount");
        ev->amount_is_int = exact_int(a, &ev->amount) && raw_is_int("amount");
        if (!ev->amount_is_int) ev->amount = 0;
        break;
    }
    case POSFW_CARD:
        get_str(obj, "pan", ev->pan, sizeof ev->pan);
        break;
    case POSFW_MESSAGE:
        if (!cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(obj, "message")))
            posfw_fail("event %lld: MessageReceived.message: missing or not an object", ev->n);
        read_message(cJSON_GetObjectItemCaseSensitive(obj, "message"), &ev->message);
        ev->mac_ok = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(obj, "mac_ok"));
        break;
    case POSFW_TIMER:
        get_str(obj, "name", ev->name, sizeof ev->name);
        break;
    case POSFW_PRINT_FINISHED:
        get_str(obj, "job_id", ev->job_id, sizeof ev->job_id);
        get_str(obj, "status", ev->status, sizeof ev->status);
        break;
    default:
        break;
    }
}

/* ------------------------------------------------------------ effects */

static cJSON *effect(posfw_out *out, const char *type) {
    cJSON *e = cJSON_CreateObject();
    if (e == NULL) die("out of memory");
    add(e, "type", cJSON_CreateString(type));
    if (!cJSON_AddItemToArray(out->effects, e)) die("out of memory");
    return e;
}

static void set_str_if(cJSON *obj, const char *key, const char *value) {
    if (value[0]) add(obj, key, cJSON_CreateString(value));
}

void posfw_send(posfw_out *out, const posfw_message *msg) {
    cJSON *m = cJSON_CreateObject();
    if (m == NULL) die("out of memory");
    add(m, "mti", cJSON_CreateString(msg->mti));
    add(m, "terminal_id", cJSON_CreateString(msg->terminal_id));
    add(m, "merchant_id", cJSON_CreateString(msg->merchant_id));
    add(m, "stan", int_node(msg->stan));
    set_str_if(m, "pan", msg->pan);
    add(m, "processing_code", cJSON_CreateString(msg->processing_code));
    if (msg->amount) add(m, "amount", int_node(msg->amount));
    add(m, "currency", cJSON_CreateString(msg->currency));
    set_str_if(m, "idem_key", msg->idem_key);
    if (msg->repeat) add(m, "repeat", cJSON_CreateTrue());
    if (msg->orig_stan) add(m, "orig_stan", int_node(msg->orig_stan));
    set_str_if(m, "orig_key", msg->orig_key);
    if (msg->debit_count) add(m, "debit_count", int_node(msg->debit_count));
    if (msg->debit_amount) add(m, "debit_amount", int_node(msg->debit_amount));
    if (msg->batch_no) add(m, "batch_no", int_node(msg->batch_no));
    if (msg->n_items) {
        cJSON *items = cJSON_CreateArray();
        if (items == NULL) die("out of memory");
        for (size_t i = 0; i < msg->n_items; i++) {
            cJSON *it = cJSON_CreateArray();
            if (it == NULL) die("out of memory");
            cJSON_AddItemToArray(it, int_node(msg->items[i].stan));
            cJSON_AddItemToArray(it, int_node(msg->items[i].amount));
            cJSON_AddItemToArray(it, cJSON_CreateString(msg->items[i].rrn));
            cJSON_AddItemToArray(items, it);
        }
        add(m, "items", items);
    }
    add(effect(out, "Send"), "message", m);
}

void posfw_set_timer(posfw_out *out, const char *name, long long delay_ms) {
    cJSON *e = effect(out, "SetTimer");
    add(e, "name", cJSON_CreateString(name));
    add(e, "delay_ms", int_node(delay_ms));
}

void posfw_cancel_timer(posfw_out *out, const char *name) {
    add(effect(out, "CancelTimer"), "name", cJSON_CreateString(name));
}

void posfw_journal(posfw_out *out, cJSON *record) {
    add(effect(out, "JournalAppend"), "record", record);
}

void posfw_journal_before_last(posfw_out *out, cJSON *record) {
    int n = cJSON_GetArraySize(out->effects);
    cJSON *last = n > 0 ? cJSON_DetachItemFromArray(out->effects, n - 1) : NULL;
    posfw_journal(out, record);
    if (last != NULL && !cJSON_AddItemToArray(out->effects, last)) die("out of memory");
}

void posfw_trim(posfw_out *out, long long count) {
    add(effect(out, "JournalTrim"), "count", int_node(count));
}

void posfw_print(posfw_out *out, const char *job_id, const posfw_receipt *r) {
    cJSON *e = effect(out, "Print");
    add(e, "job_id", cJSON_CreateString(job_id));
    cJSON *rc = cJSON_CreateObject();
    if (rc == NULL) die("out of memory");
    add(rc, "status", cJSON_CreateString(r->status));
    add(rc, "amount", int_node(r->amount));
    add(rc, "rrn", cJSON_CreateString(r->rrn));
    add(rc, "stan", int_node(r->stan));
    add(rc, "pan_last4", cJSON_CreateString(r->pan_last4));
    add(rc, "auth_code", cJSON_CreateString(r->auth_code));
    add(rc, "idem_key", cJSON_CreateString(r->idem_key));
    add(rc, "copy", cJSON_CreateBool(r->copy));
    add(e, "receipt", rc);
}

void posfw_display(posfw_out *out, const char *outcome, const char *text, const char *rrn) {
    cJSON *e = effect(out, "Display");
    add(e, "outcome", cJSON_CreateString(outcome));
    add(e, "text", cJSON_CreateString(text ? text : ""));
    add(e, "rrn", cJSON_CreateString(rrn ? rrn : ""));
}

/* ------------------------------------------------------------ journal records */

cJSON *posfw_record(const char *type) {
    cJSON *r = cJSON_CreateObject();
    if (r == NULL) die("out of memory");
    add(r, "type", cJSON_CreateString(type));
    return r;
}

void posfw_rec_set_str(cJSON *record, const char *key, const char *value) {
    add(record, key, cJSON_CreateString(value));
}

void posfw_rec_set_int(cJSON *record, const char *key, long long value) {
    add(record, key, int_node(value));
}

bool posfw_rec_get_str(const cJSON *record, const char *key, char *buf, size_t size) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(record, key);
    if (!cJSON_IsString(item) || strlen(item->valuestring) >= size) return false;
    copy_str(buf, size, item->valuestring);
    return true;
}

bool posfw_rec_get_int(const cJSON *record, const char *key, long long *value) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(record, key);
    if (cJSON_IsNumber(item)) return exact_int(item, value);
    if (cJSON_IsString(item) && item->valuestring[0]) { /* Python's int("12") */
        char *end = NULL;
        *value = strtoll(item->valuestring, &end, 10);
        return end != NULL && *end == '\0';
    }
    return false;
}

/* ------------------------------------------------------------ the loop */

static void write_line(cJSON *obj) {
    char *text = cJSON_PrintUnformatted(obj);
    if (text == NULL) die("out of memory");
    fputs(text, stdout);
    fputc('\n', stdout);
    fflush(stdout);
    cJSON_free(text);
}

/* One line from stdin into *buf (grown as needed, never past POSFW_LINE_MAX bytes),
 * without its newline; its length, or -1 at the end of input. */
static long read_line(char **buf, size_t *cap) {
    size_t len = 0;
    for (;;) {
        if (*cap - len < 2) {
            size_t next = *cap ? *cap * 2 : 65536;
            if (next > POSFW_LINE_MAX + 2) next = POSFW_LINE_MAX + 2;
            if (next <= *cap) posfw_fail("an input line over %d bytes", POSFW_LINE_MAX);
            char *p = realloc(*buf, next);
            if (p == NULL) posfw_fail("out of memory reading a line");
            *buf = p;
            *cap = next;
        }
        if (fgets(*buf + len, (int)(*cap - len), stdin) == NULL) {
            if (ferror(stdin)) posfw_fail("cannot read stdin");
            return len ? (long)len : -1; /* a last line without a newline still counts */
        }
        len += strlen(*buf + len);
        if (len && (*buf)[len - 1] == '\n') {
            (*buf)[--len] = '\0';
            return (long)len;
        }
    }
}

/* Wait for the next event line without sleeping, for up to 200 us, then let
 * fgets block. The harness writes the next event microseconds after our answer; a
 * process that sleeps in between pays a wake-up per event (tens of microseconds on
 * a virtual machine). The clock here only decides how long to poll: nothing the
 * firmware decides depends on it. */
#define POSFW_SPIN_NS 200000L
static void spin_for_input(void) {
    struct pollfd p = {.fd = fileno(stdin), .events = POLLIN};
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        if (poll(&p, 1, 0) != 0) return;
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) > POSFW_SPIN_NS) return;
    }
}

static void greet(const posfw_firmware *fw, const cJSON *obj) {
    long long protocol = 0;
    if (!get_int(obj, "protocol", &protocol) || protocol != POSFW_PROTOCOL)
        posfw_fail("hello: protocol %lld, this posfw speaks %d", protocol, POSFW_PROTOCOL);
    const cJSON *config = cJSON_GetObjectItemCaseSensitive(obj, "config");
    if (!cJSON_IsObject(config)) posfw_fail("hello: config missing or not an object");
    posfw_config cfg;
    read_config(config, &cfg);
    fw->init(&cfg);
    cJSON *hello = cJSON_CreateObject();
    if (hello == NULL) die("out of memory");
    add(hello, "type", cJSON_CreateString("hello"));
    add(hello, "protocol", int_node(POSFW_PROTOCOL));
    add(hello, "name", cJSON_CreateString(fw->name));
    add(hello, "version", cJSON_CreateString(fw->version));
    write_line(hello);
    cJSON_Delete(hello);
}

int posfw_main(const posfw_firmware *fw) {
    char *line = NULL;
    size_t cap = 0;
    long len;
    bool greeted = false;
    for (;;) {
        at_line++;
        at_event = -1;
        spin_for_input();
        if ((len = read_line(&line, &cap)) < 0) break;
        cJSON *obj = cJSON_ParseWithLength(line, (size_t)len);
        if (!cJSON_IsObject(obj)) posfw_fail("not a JSON object: %.60s", line);
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(obj, "type");
        if (!cJSON_IsString(type)) posfw_fail("type: missing or not a string");
        if (strcmp(type->valuestring, "hello") == 0) {
            greet(fw, obj);
            greeted = true;
            cJSON_Delete(obj);
            continue;
        }
        if (!greeted) posfw_fail("an event (%.40s) before hello", type->valuestring);
        posfw_event ev;
        raw_line = line;
        read_event(obj, &ev);
        at_event = ev.n;
        posfw_out out = {cJSON_CreateArray()};
        if (out.effects == NULL) die("out of memory");
        fw->handle(&ev, &out);
        cJSON *answer = cJSON_CreateObject();
        if (answer == NULL) die("out of memory");
        add(answer, "n", int_node(ev.n));
        add(answer, "effects", out.effects);
        write_line(answer);
        cJSON_Delete(answer);
        free(ev.message.items);
        cJSON_Delete(obj);
        raw_line = NULL;
    }
    free(line);
    return 0;
}

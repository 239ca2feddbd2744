/* posfw.h: the posharness exec: firmware pipe protocol, version 1, for C firmwares.
 *
 * A vendor links posfw.c with their own transaction logic and gets:
 *   - the main loop: read one JSON line per event from stdin, answer one line of
 *     effects on stdout (flushed), errors on stderr; the hello handshake;
 *   - events decoded into C structs (posfw_event, posfw_message, posfw_config);
 *   - effects encoded by small calls (posfw_send, posfw_set_timer, posfw_journal,
 *     posfw_print, posfw_display ...), integers written exactly (64-bit);
 *   - journal records as cJSON objects, with checked getters for Boot's journal.
 * The harness owns the clock (time arrives only as TimerExpired), the journal
 * (JournalAppend / Boot.journal), the MAC (it signs what you send and sets mac_ok
 * on what you receive) and every device. See docs/firmware-protocol.md.
 */
#ifndef POSFW_H
#define POSFW_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#ifdef __cplusplus
#define POSFW_NORETURN [[noreturn]]
extern "C" {
#else
#define POSFW_NORETURN _Noreturn
#endif

#define POSFW_PROTOCOL 1
#define POSFW_STR 80 /* room for every string field of a message (keys: 64) */
#define POSFW_LINE_MAX (16 << 20) /* longest input line (a Boot carries the journal) */
#define POSFW_BACKOFF_MAX 16      /* steps of config.reversal_backoff_ms */
/* Integers are read exactly up to 2^53 (cJSON keeps numbers as doubles); a larger
 * one reads as absent. They are written exactly to 64 bits. */
#define POSFW_INT_EXACT_MAX 9007199254740992.0

typedef struct {
    char terminal_id[POSFW_STR];
    char merchant_id[POSFW_STR];
    long long response_timeout_ms;
    long long max_sends;
    long long reversal_backoff_ms[POSFW_BACKOFF_MAX];
    size_t n_reversal_backoff;
    long long reversal_max_tries;
    long long debounce_ms;
    long long amount_max;
    bool status_inquiry; /* ask the host (0600) before reversing; default true */
    const cJSON *extra; /* config.extra: the firmware's own settings (an object, never
                           NULL), valid until the next hello */
} posfw_config;

typedef struct {
    long long stan;
    long long amount;
    char rrn[POSFW_STR];
} posfw_item;

/* One message; fields the harness leaves out take the protocol's defaults. */
typedef struct {
    char mti[8];
    char terminal_id[POSFW_STR];
    char merchant_id[POSFW_STR];
    long long stan;
    char pan[POSFW_STR];
    char processing_code[8]; /* default "000000" */
    long long amount;
    char currency[8]; /* default "978" */
    char rrn[POSFW_STR];
    char rc[8];
    char auth_code[POSFW_STR];
    char idem_key[POSFW_STR];
    bool repeat;
    long long orig_stan;
    char orig_key[POSFW_STR];
    long long debit_count, debit_amount, credit_count, credit_amount;
    long long batch_no;
    posfw_item *items; /* owned by the message */
    size_t n_items;
} posfw_message;

typedef enum {
    POSFW_BOOT,
    POSFW_AMOUNT_KEYED,
    POSFW_CONFIRM,
    POSFW_CANCEL,
    POSFW_CARD,
    POSFW_MESSAGE,
    POSFW_TIMER,
    POSFW_PRINT_FINISHED,
    POSFW_REPRINT,
    POSFW_BATCH_CLOSE,
    POSFW_UNKNOWN
} posfw_event_type;

typedef struct {
    posfw_event_type type;
    long long n;
    const cJSON *journal;   /* BOOT: array of record objects, oldest first */
    char nonce[POSFW_STR];  /* BOOT: this boot's randomness (hex) */
    long long amount;       /* AMOUNT_KEYED */
    bool amount_is_int;     /* AMOUNT_KEYED: false for a non-integer amount */
    char pan[POSFW_STR];    /* CARD ("" = misread) */
    posfw_message message;  /* MESSAGE */
    bool mac_ok;            /* MESSAGE: signed with our key and well formed */
    char name[POSFW_STR];   /* TIMER */
    char job_id[2 * POSFW_STR]; /* PRINT_FINISHED */
    char status[16];        /* PRINT_FINISHED: ok, jammed, no_paper, failed */
} posfw_event;

typedef struct posfw_out posfw_out; /* the effects of one event, in order */

typedef struct {
    char status[16];
    long long amount;
    char rrn[POSFW_STR];
    long long stan;
    char pan_last4[8];
    char auth_code[POSFW_STR];
    char idem_key[POSFW_STR];
    bool copy;
} posfw_receipt;

typedef struct {
    const char *name;
    const char *version;
    /* Called at every hello (a power-on): forget everything, keep the config. */
    void (*init)(const posfw_config *config);
    /* One event in, its effects appended to `out`. Must not exit. */
    void (*handle)(const posfw_event *event, posfw_out *out);
} posfw_firmware;

/* Runs the protocol until stdin closes; returns the process exit code. Input that
 * breaks the protocol (not JSON, an event before hello, another protocol version,
 * a line over POSFW_LINE_MAX) ends the process with one line on stderr naming the
 * line or event number, and exit status 2. Unknown event types reach `handle` as
 * POSFW_UNKNOWN (answer with no effects: newer harnesses may add events). */
int posfw_main(const posfw_firmware *firmware);

/* stderr, prefixed "posfw: event N: " (the harness keeps it and shows the last
 * lines when the firmware dies); posfw_fail also exits with status 2. */
void posfw_log(const char *fmt, ...);
POSFW_NORETURN void posfw_fail(const char *fmt, ...);
/* calloc that never returns NULL (out of memory: posfw_fail). */
void *posfw_alloc(size_t n, size_t size);

/* Effects. Strings are copied. */
void posfw_send(posfw_out *out, const posfw_message *msg);
void posfw_set_timer(posfw_out *out, const char *name, long long delay_ms);
void posfw_cancel_timer(posfw_out *out, const char *name);
void posfw_journal(posfw_out *out, cJSON *record); /* takes ownership of record */
void posfw_trim(posfw_out *out, long long count);
void posfw_print(posfw_out *out, const char *job_id, const posfw_receipt *receipt);
void posfw_display(posfw_out *out, const char *outcome, const char *text, const char *rrn);
/* Insert `record` as a journal effect before the last effect appended so far. */
void posfw_journal_before_last(posfw_out *out, cJSON *record);

/* Journal records: build with posfw_record("sale") + posfw_rec_set_*; read with
 * posfw_rec_get_* (false when missing or of the wrong type). */
cJSON *posfw_record(const char *type);
void posfw_rec_set_str(cJSON *record, const char *key, const char *value);
void posfw_rec_set_int(cJSON *record, const char *key, long long value);
bool posfw_rec_get_str(const cJSON *record, const char *key, char *buf, size_t size);
bool posfw_rec_get_int(const cJSON *record, const char *key, long long *value);

/* A fresh message with the protocol's defaults. */
void posfw_message_init(posfw_message *msg, const char *mti);

#ifdef __cplusplus
}
#endif

#endif

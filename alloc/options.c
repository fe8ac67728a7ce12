/* options.c: the GOMALLOC environment variable, comma-separated key=value pairs like Go's
 * GODEBUG. Everything about an option comes from its line in options.def. Runs during
 * process init: reads environ directly (getenv is fine but a wrapper could allocate),
 * never allocates, reports bad input with one line on stderr and keeps the default. */
#include "internal.h"

#include <signal.h>
#include <unistd.h>

extern char **environ;

enum gm_opt_type { GM_T_bool, GM_T_int, GM_T_size, GM_T_stats, GM_T_path, GM_T_signal };

/* Path values are copied here (NUL-terminated; the option holds the address): GOMALLOC's
 * value is one comma-separated string, so it cannot be pointed into. */
static char path_pool[2048];
static size_t path_used;

typedef struct gm_option_desc {
    const char *name;
    enum gm_opt_type type;
    int64_t def;
    const char *desc;
    size_t offset;
} gm_option_desc;

static const gm_option_desc gm_option_table[] = {
#define GM_OPTION(name, type, def, desc) {#name, GM_T_##type, def, desc, offsetof(gm_options_t, name)},
#include "options.def"
#undef GM_OPTION
};
#define GM_NUM_OPTIONS (sizeof gm_option_table / sizeof gm_option_table[0])

gm_options_t gm_opt = {
#define GM_OPTION(name, type, def, desc) .name = def,
#include "options.def"
#undef GM_OPTION
};

static int64_t *opt_slot(const gm_option_desc *d) { return (int64_t *)((char *)&gm_opt + d->offset); }

static bool streq_n(const char *a, size_t n, const char *b) { return strlen(b) == n && memcmp(a, b, n) == 0; }

/* Parses a decimal number with an optional K/M/G/T suffix (powers of 1024, as GOMEMLIMIT). */
static bool parse_number(const char *s, size_t n, bool allow_suffix, int64_t *out) {
    if (n == 0) return false;
    bool neg = false;
    size_t i = 0;
    if (s[0] == '-') {
        neg = true;
        i = 1;
    }
    uint64_t v = 0;
    size_t digits = 0;
    for (; i < n && s[i] >= '0' && s[i] <= '9'; i++, digits++) {
        if (v > (UINT64_MAX - 9) / 10) return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (digits == 0) return false;
    unsigned shift = 0;
    if (i < n && allow_suffix) {
        switch (s[i] | 0x20) {
        case 'k': shift = 10; break;
        case 'm': shift = 20; break;
        case 'g': shift = 30; break;
        case 't': shift = 40; break;
        default: return false;
        }
        i++;
        if (i < n && (s[i] | 0x20) == 'i') i++; /* KiB-style */
        if (i < n && (s[i] | 0x20) == 'b') i++;
    }
    if (i != n) return false;
    if (shift && v > (UINT64_MAX >> shift)) return false;
    v <<= shift;
    if (v > (uint64_t)INT64_MAX) return false;
    *out = neg ? -(int64_t)v : (int64_t)v;
    return true;
}

static bool parse_value(const gm_option_desc *d, const char *v, size_t n, int64_t *out) {
    switch (d->type) {
    case GM_T_bool:
        if (streq_n(v, n, "1") || streq_n(v, n, "true") || streq_n(v, n, "on")) return *out = 1, true;
        if (streq_n(v, n, "0") || streq_n(v, n, "false") || streq_n(v, n, "off")) return *out = 0, true;
        return false;
    case GM_T_int: return parse_number(v, n, false, out);
    case GM_T_size: return parse_number(v, n, true, out) && *out >= 0;
    case GM_T_path:
        if (n == 0 || path_used + n + 1 > sizeof path_pool) return false;
        memcpy(path_pool + path_used, v, n);
        path_pool[path_used + n] = '\0';
        *out = (int64_t)(intptr_t)(path_pool + path_used);
        path_used += n + 1;
        return true;
    case GM_T_signal:
        if (n > 3 && memcmp(v, "SIG", 3) == 0) v += 3, n -= 3;
        if (streq_n(v, n, "USR1")) return *out = SIGUSR1, true;
        if (streq_n(v, n, "USR2")) return *out = SIGUSR2, true;
        if (streq_n(v, n, "PROF")) return *out = SIGPROF, true;
        return parse_number(v, n, false, out) && *out >= 0 && *out < 65 && *out != SIGKILL && *out != SIGSTOP;
    case GM_T_stats:
        if (streq_n(v, n, "0") || streq_n(v, n, "off")) return *out = GM_STATS_OFF, true;
        if (streq_n(v, n, "1") || streq_n(v, n, "text")) return *out = GM_STATS_TEXT, true;
        if (streq_n(v, n, "json")) return *out = GM_STATS_JSON, true;
        return false;
    }
    return false;
}

static void warn_option(const char *what, const char *s, size_t n) {
    gm_buf b;
    gm_buf_init(&b, STDERR_FILENO);
    gm_buf_puts(&b, "gomalloc: GOMALLOC: ");
    gm_buf_puts(&b, what);
    gm_buf_puts(&b, " '");
    gm_buf_putn(&b, s, n);
    gm_buf_puts(&b, "' ignored (GOMALLOC=help=1 lists the options)\n");
    gm_buf_flush(&b);
}

static void parse_item(const char *s, size_t n) {
    if (n == 0) return;
    const char *eq = memchr(s, '=', n);
    size_t klen = eq ? (size_t)(eq - s) : n;
    for (size_t i = 0; i < GM_NUM_OPTIONS; i++) {
        const gm_option_desc *d = &gm_option_table[i];
        if (!streq_n(s, klen, d->name)) continue;
        int64_t v;
        if (eq == NULL && d->type == GM_T_bool) {
            *opt_slot(d) = 1; /* a bare key turns a switch on */
        } else if (eq != NULL && parse_value(d, eq + 1, n - klen - 1, &v)) {
            *opt_slot(d) = v;
        } else {
            warn_option("bad value in", s, n);
        }
        return;
    }
    warn_option("unknown option", s, klen);
}

void options_parse(const char *s) {
    while (*s) {
        const char *comma = strchr(s, ',');
        size_t n = comma ? (size_t)(comma - s) : strlen(s);
        parse_item(s, n);
        s += n;
        if (*s == ',') s++;
    }
}

void options_init(void) {
    if (environ == NULL) return;
    for (char **e = environ; *e != NULL; e++)
        if (strncmp(*e, "GOMALLOC=", 9) == 0) options_parse(*e + 9);
    if (gm_opt.help || gm_opt.verbose) options_print(STDERR_FILENO);
}

static void put_value(gm_buf *b, const gm_option_desc *d, int64_t v) {
    if (d->type == GM_T_stats) gm_buf_puts(b, v == GM_STATS_JSON ? "json" : v == GM_STATS_TEXT ? "1" : "0");
    else if (d->type == GM_T_path) gm_buf_puts(b, v ? (const char *)(intptr_t)v : "");
    else gm_buf_puti(b, v);
}

void options_print(int fd) {
    gm_buf b;
    gm_buf_init(&b, fd);
    gm_buf_puts(&b, "gomalloc: options (GOMALLOC=key=value,...):\n");
    for (size_t i = 0; i < GM_NUM_OPTIONS; i++) {
        const gm_option_desc *d = &gm_option_table[i];
        gm_buf_puts(&b, "gomalloc:   ");
        gm_buf_puts(&b, d->name);
        gm_buf_puts(&b, "=");
        put_value(&b, d, *opt_slot(d));
        gm_buf_puts(&b, " (default ");
        put_value(&b, d, d->def);
        gm_buf_puts(&b, "): ");
        gm_buf_puts(&b, d->desc);
        gm_buf_puts(&b, "\n");
    }
    gm_buf_flush(&b);
}

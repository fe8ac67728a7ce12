/* test_options.c: the GOMALLOC parser (alloc/options.c): good values, later keys winning,
 * bare switches, bad values and unknown keys (one warning line each naming them, value
 * unchanged), and GOMALLOC=help output listing every option from options.def. */
#include <unistd.h>

#include "gm_test.h"
#include "internal.h"

/* Runs options_parse(s) with stderr captured into buf. */
static void parse_capture(const char *s, char *buf, size_t cap) {
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    int saved = dup(STDERR_FILENO);
    dup2(fds[1], STDERR_FILENO);
    options_parse(s);
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(fds[1]);
    gm_read_all(fds[0], buf, cap);
}

static unsigned count_lines(const char *s) {
    unsigned n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

static gm_options_t saved_opts;
static int save_opts(void **state) {
    (void)state;
    saved_opts = gm_opt;
    return 0;
}
static int restore_opts(void **state) {
    (void)state;
    gm_opt = saved_opts;
    return 0;
}

static void test_good_values(void **state) {
    (void)state;
    char err[1024];
    parse_capture("stats=json,foreign_warnings=3,verbose=0", err, sizeof err);
    assert_string_equal(err, "");
    assert_int_equal(gm_opt.stats, GM_STATS_JSON);
    assert_int_equal(gm_opt.foreign_warnings, 3);
    parse_capture("stats=text", err, sizeof err);
    assert_int_equal(gm_opt.stats, GM_STATS_TEXT);
    parse_capture("stats=1,stats=0", err, sizeof err); /* later keys win */
    assert_int_equal(gm_opt.stats, GM_STATS_OFF);
    parse_capture("verbose", err, sizeof err); /* a bare key turns a switch on */
    assert_int_equal(gm_opt.verbose, 1);
    parse_capture("verbose=false,,", err, sizeof err); /* empty items are ignored */
    assert_int_equal(gm_opt.verbose, 0);
    assert_string_equal(err, "");
}

static void test_bad_value_keeps_old(void **state) {
    (void)state;
    char err[1024];
    gm_opt.foreign_warnings = 5;
    parse_capture("foreign_warnings=lots", err, sizeof err);
    assert_int_equal(gm_opt.foreign_warnings, 5);
    assert_int_equal(count_lines(err), 1);
    assert_non_null(strstr(err, "gomalloc: GOMALLOC: bad value in 'foreign_warnings=lots'"));
    parse_capture("stats=yes", err, sizeof err);
    assert_int_equal(count_lines(err), 1);
    assert_non_null(strstr(err, "'stats=yes'"));
    parse_capture("foreign_warnings=12x", err, sizeof err);
    assert_int_equal(gm_opt.foreign_warnings, 5);
    assert_int_equal(count_lines(err), 1);
}

static void test_unknown_key(void **state) {
    (void)state;
    char err[1024];
    gm_options_t before = gm_opt;
    parse_capture("no_such_option=1,stats=1", err, sizeof err);
    assert_int_equal(count_lines(err), 1);
    assert_non_null(strstr(err, "gomalloc: GOMALLOC: unknown option 'no_such_option' ignored"));
    assert_int_equal(gm_opt.stats, GM_STATS_TEXT); /* the good key after it still applies */
    gm_opt.stats = before.stats;
    assert_memory_equal(&gm_opt, &before, sizeof before);
}

static void test_help_lists_every_option(void **state) {
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    options_print(fds[1]);
    close(fds[1]);
    static char buf[8192];
    size_t len = 0;
    ssize_t n;
    while ((n = read(fds[0], buf + len, sizeof buf - 1 - len)) > 0) len += (size_t)n;
    buf[len] = 0;
    close(fds[0]);
    unsigned options = 0;
#define GM_OPTION(name, type, def, desc)                                                     \
    options++;                                                                            \
    if (strstr(buf, "gomalloc:   " #name "=") == NULL) fail_msg("help has no line for " #name); \
    if (strstr(buf, desc) == NULL) fail_msg("help has no description for " #name);
#include "options.def"
#undef GM_OPTION
    assert_int_equal(count_lines(buf), options + 1); /* a title line, then one per option */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_good_values, save_opts, restore_opts),
        cmocka_unit_test_setup_teardown(test_bad_value_keeps_old, save_opts, restore_opts),
        cmocka_unit_test_setup_teardown(test_unknown_key, save_opts, restore_opts),
        cmocka_unit_test_setup_teardown(test_help_lists_every_option, save_opts, restore_opts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* print.c: formatting for messages and reports without stdio or malloc (either could
 * re-enter the allocator or take locks a crashing thread holds). A gm_buf is a fixed
 * stack buffer that flushes to a file descriptor when full. */
#include "internal.h"

void gm_buf_init(gm_buf *b, int fd) {
    b->fd = fd;
    b->len = 0;
    b->failed = false;
}

void gm_buf_flush(gm_buf *b) {
    if (b->len && !os_write_all(b->fd, b->data, b->len)) b->failed = true;
    b->len = 0;
}

void gm_buf_putn(gm_buf *b, const char *s, size_t n) {
    while (n > 0) {
        if (b->len == sizeof b->data) gm_buf_flush(b);
        size_t room = sizeof b->data - b->len;
        size_t k = n < room ? n : room;
        memcpy(b->data + b->len, s, k);
        b->len += k;
        s += k;
        n -= k;
    }
}

void gm_buf_puts(gm_buf *b, const char *s) { gm_buf_putn(b, s, strlen(s)); }

void gm_buf_putu(gm_buf *b, uint64_t v) {
    char tmp[24];
    size_t i = sizeof tmp;
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    gm_buf_putn(b, tmp + i, sizeof tmp - i);
}

void gm_buf_puti(gm_buf *b, int64_t v) {
    if (v < 0) {
        gm_buf_putn(b, "-", 1);
        gm_buf_putu(b, (uint64_t)0 - (uint64_t)v);
    } else {
        gm_buf_putu(b, (uint64_t)v);
    }
}

/* Lower-case hex with a 0x prefix, as printf's %p prints it. */
void gm_buf_putx(gm_buf *b, uint64_t v) {
    char tmp[18];
    size_t i = sizeof tmp;
    do {
        tmp[--i] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v);
    tmp[--i] = 'x';
    tmp[--i] = '0';
    gm_buf_putn(b, tmp + i, sizeof tmp - i);
}

/* Right-aligns the decimal v in a field of width characters. */
void gm_buf_putu_w(gm_buf *b, uint64_t v, int width) {
    char tmp[24];
    size_t i = sizeof tmp;
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (int pad = width - (int)(sizeof tmp - i); pad > 0; pad--) gm_buf_putn(b, " ", 1);
    gm_buf_putn(b, tmp + i, sizeof tmp - i);
}

/* traceback.c: call stacks for the heap profiler (Go's traceback.go, for C frames). On
 * x86-64 it steps frames itself from the DWARF call-frame information (.eh_frame) and
 * caches each return address's rule, so a warm stack costs tens of instructions a frame
 * instead of libgcc's ~2000; libgcc's _Unwind_Backtrace covers everything else (other
 * architectures, signal frames, rules this reader does not model). Allocates nothing. */
#include "internal.h"

#include <dlfcn.h>
#include <link.h>
#include <unwind.h>

#define TB_MAX_DEPTH 64

/* ---- gomalloc's own frames ---- */

/* The loaded object holding this code, so stacks can start at the caller of malloc. Empty
 * when gomalloc is linked statically into the program (its frames then stay in stacks). */
static uintptr_t self_lo, self_hi;
static atomic_int self_known;

static int find_self(struct dl_phdr_info *info, size_t size, void *arg) {
    (void)size;
    uintptr_t target = (uintptr_t)arg;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X)) continue;
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr, hi = lo + ph->p_memsz;
        if (target < lo || target >= hi) continue;
        if (info->dlpi_name != NULL && info->dlpi_name[0] != '\0') {
            self_lo = lo;
            self_hi = hi;
        }
        return 1;
    }
    return 0;
}

static void know_self(void) {
    if (atomic_load_explicit(&self_known, memory_order_acquire)) return;
    dl_iterate_phdr(find_self, (void *)(uintptr_t)&know_self);
    atomic_store_explicit(&self_known, 1, memory_order_release);
}

GM_INLINE bool is_self(uintptr_t pc) { return pc - self_lo < self_hi - self_lo; }

/* ---- libgcc's unwinder: the general fallback ---- */

typedef struct trace_state {
    uintptr_t *pcs;
    unsigned n, max;
    bool first;    /* the frame of capture_libgcc itself, never recorded */
    bool skipping; /* still inside gomalloc's own frames */
} trace_state;

static _Unwind_Reason_Code trace_frame(struct _Unwind_Context *ctx, void *arg) {
    trace_state *t = arg;
    uintptr_t ip = _Unwind_GetIP(ctx);
    if (ip == 0) return _URC_END_OF_STACK;
    if (t->first) {
        t->first = false;
        return _URC_NO_REASON;
    }
    if (t->skipping) {
        if (is_self(ip)) return _URC_NO_REASON;
        t->skipping = false;
    }
    t->pcs[t->n++] = ip;
    return t->n == t->max ? _URC_END_OF_STACK : _URC_NO_REASON;
}

static GM_NOINLINE unsigned capture_libgcc(uintptr_t *pcs, unsigned max, bool skip_self) {
    trace_state t = {pcs, 0, max, true, skip_self};
    _Unwind_Backtrace(trace_frame, &t);
    return t.n;
}

#if defined(__x86_64__) && defined(__linux__) && defined(DLFO_STRUCT_HAS_EH_DBASE)
#define TB_CFI 1

/* ---- reading .eh_frame (x86-64 DWARF registers: 6 = rbp, 7 = rsp, 16 = return address) ---- */

/* How to leave a frame, given its pc: CFA = (rsp or rbp) + cfa_off; the return address
 * is at CFA - 8 (checked); the caller's rbp is at CFA + rbp_off or unchanged. */
enum { RULE_BAD = 0, RULE_OK = 1, RULE_END = 2 }; /* END: the outermost frame */
typedef struct cfi_rule {
    uint8_t kind;
    uint8_t cfa_rbp; /* CFA from rbp, else from rsp */
    uint8_t rbp_saved;
    int32_t cfa_off, rbp_off;
} cfi_rule;

typedef struct cfi_cursor {
    const uint8_t *p, *end;
    bool bad;
} cfi_cursor;

static uint64_t rd_uleb(cfi_cursor *c) {
    uint64_t v = 0;
    for (unsigned shift = 0; c->p < c->end && shift < 64; shift += 7) {
        uint8_t b = *c->p++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) return v;
    }
    c->bad = true;
    return 0;
}

static int64_t rd_sleb(cfi_cursor *c) {
    int64_t v = 0;
    unsigned shift = 0;
    for (; c->p < c->end && shift < 64;) {
        uint8_t b = *c->p++;
        v |= (int64_t)(b & 0x7f) << shift;
        shift += 7;
        if (!(b & 0x80)) {
            if (shift < 64 && (b & 0x40)) v |= -((int64_t)1 << shift);
            return v;
        }
    }
    c->bad = true;
    return 0;
}

static uint64_t rd_fixed(cfi_cursor *c, unsigned n) {
    if ((size_t)(c->end - c->p) < n) {
        c->bad = true;
        return 0;
    }
    uint64_t v = 0;
    memcpy(&v, c->p, n); /* little-endian */
    c->p += n;
    return v;
}

/* A DW_EH_PE-encoded pointer. datarel is relative to the .eh_frame_hdr (dbase). */
static uintptr_t rd_encoded(cfi_cursor *c, uint8_t enc, uintptr_t dbase) {
    if (enc == 0xff) return 0; /* omit */
    uintptr_t at = (uintptr_t)c->p, v;
    switch (enc & 0x0f) {
    case 0x00: v = (uintptr_t)rd_fixed(c, 8); break;
    case 0x01: v = (uintptr_t)rd_uleb(c); break;
    case 0x02: v = (uintptr_t)rd_fixed(c, 2); break;
    case 0x03: v = (uintptr_t)rd_fixed(c, 4); break;
    case 0x04: v = (uintptr_t)rd_fixed(c, 8); break;
    case 0x09: v = (uintptr_t)rd_sleb(c); break;
    case 0x0a: v = (uintptr_t)(int64_t)(int16_t)rd_fixed(c, 2); break;
    case 0x0b: v = (uintptr_t)(int64_t)(int32_t)rd_fixed(c, 4); break;
    case 0x0c: v = (uintptr_t)rd_fixed(c, 8); break;
    default: c->bad = true; return 0;
    }
    switch (enc & 0x70) {
    case 0x00: break;
    case 0x10: v += at; break;    /* pcrel */
    case 0x30: v += dbase; break; /* datarel */
    default: c->bad = true; return 0;
    }
    if (enc & 0x80) c->bad = true; /* indirect: not used for code addresses */
    return v;
}

/* Register rules the interpreter tracks: the CFA, rbp and the return address. */
typedef struct cfi_state {
    uint8_t cfa_reg;
    bool cfa_expr;           /* CFA given by an expression: not modelled */
    int64_t cfa_off;
    uint8_t rbp_how, ra_how; /* 0 same/unchanged, 1 at CFA+off, 2 undefined, 3 other */
    int64_t rbp_off, ra_off;
} cfi_state;

static void set_reg(cfi_state *s, uint64_t reg, uint8_t how, int64_t off) {
    if (reg == 6) s->rbp_how = how, s->rbp_off = off;
    else if (reg == 16) s->ra_how = how, s->ra_off = off;
}

/* Runs call-frame instructions until the row that covers target. Returns false on an
 * opcode it does not know or malformed input. */
static bool cfi_run(cfi_cursor *c, cfi_state *s, const cfi_state *initial, uintptr_t *loc, uintptr_t target,
                    uint64_t code_align, int64_t data_align, uint8_t fde_enc) {
    cfi_state stack[8];
    unsigned depth = 0;
    while (c->p < c->end && !c->bad) {
        uint8_t op = *c->p++;
        uint64_t reg;
        uintptr_t adv = 0;
        switch (op & 0xc0) {
        case 0x40: adv = (op & 0x3f) * code_align; goto advance;
        case 0x80: set_reg(s, op & 0x3f, 1, (int64_t)rd_uleb(c) * data_align); continue;
        case 0xc0:
            reg = op & 0x3f;
            if (reg == 6) s->rbp_how = initial->rbp_how, s->rbp_off = initial->rbp_off;
            if (reg == 16) s->ra_how = initial->ra_how, s->ra_off = initial->ra_off;
            continue;
        }
        switch (op) {
        case 0x00: continue;                                        /* nop */
        case 0x01: *loc = rd_encoded(c, fde_enc, 0); continue;      /* set_loc */
        case 0x02: adv = rd_fixed(c, 1) * code_align; goto advance; /* advance_loc1 */
        case 0x03: adv = rd_fixed(c, 2) * code_align; goto advance;
        case 0x04: adv = rd_fixed(c, 4) * code_align; goto advance;
        case 0x05: reg = rd_uleb(c); set_reg(s, reg, 1, (int64_t)rd_uleb(c) * data_align); continue;
        case 0x06:
            reg = rd_uleb(c);
            if (reg == 6) s->rbp_how = initial->rbp_how, s->rbp_off = initial->rbp_off;
            if (reg == 16) s->ra_how = initial->ra_how, s->ra_off = initial->ra_off;
            continue;
        case 0x07: set_reg(s, rd_uleb(c), 2, 0); continue;          /* undefined */
        case 0x08: set_reg(s, rd_uleb(c), 0, 0); continue;          /* same_value */
        case 0x09: reg = rd_uleb(c); rd_uleb(c); set_reg(s, reg, 3, 0); continue; /* register */
        case 0x0a:
            if (depth == 8) return false;
            stack[depth++] = *s;
            continue;
        case 0x0b:
            if (depth == 0) return false;
            *s = stack[--depth];
            continue;
        case 0x0c: s->cfa_reg = (uint8_t)rd_uleb(c); s->cfa_off = (int64_t)rd_uleb(c); s->cfa_expr = false; continue;
        case 0x0d: s->cfa_reg = (uint8_t)rd_uleb(c); s->cfa_expr = false; continue;
        case 0x0e: s->cfa_off = (int64_t)rd_uleb(c); continue;
        case 0x0f: c->p += rd_uleb(c); s->cfa_expr = true; continue; /* def_cfa_expression */
        case 0x10: reg = rd_uleb(c); c->p += rd_uleb(c); set_reg(s, reg, 3, 0); continue;
        case 0x11: reg = rd_uleb(c); set_reg(s, reg, 1, rd_sleb(c) * data_align); continue;
        case 0x12: s->cfa_reg = (uint8_t)rd_uleb(c); s->cfa_off = rd_sleb(c) * data_align; s->cfa_expr = false; continue;
        case 0x13: s->cfa_off = rd_sleb(c) * data_align; continue;
        case 0x14: reg = rd_uleb(c); rd_uleb(c); set_reg(s, reg, 3, 0); continue; /* val_offset */
        case 0x15: reg = rd_uleb(c); rd_sleb(c); set_reg(s, reg, 3, 0); continue;
        case 0x16: reg = rd_uleb(c); c->p += rd_uleb(c); set_reg(s, reg, 3, 0); continue;
        case 0x2e: rd_uleb(c); continue; /* GNU_args_size */
        case 0x2f: reg = rd_uleb(c); set_reg(s, reg, 1, -(int64_t)rd_uleb(c) * data_align); continue;
        default: return false;
        }
    advance:
        if (*loc + adv > target) return !c->bad;
        *loc += adv;
    }
    return !c->bad;
}

static int32_t rd_i32(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Finds and interprets the FDE covering pc (a return address: the call is at pc - 1). */
static cfi_rule cfi_compute(uintptr_t pc) {
    cfi_rule bad = {RULE_BAD, 0, 0, 0, 0};
    uintptr_t target = pc - 1;
    struct dl_find_object dlfo;
    if (_dl_find_object((void *)target, &dlfo) != 0 || dlfo.dlfo_eh_frame == NULL) return bad;
    const uint8_t *hdr = dlfo.dlfo_eh_frame;
    uintptr_t hbase = (uintptr_t)hdr;
    if (hdr[0] != 1 || hdr[3] != 0x3b) return bad; /* binary search table of sdata4 datarel */
    cfi_cursor c = {hdr + 4, hdr + 4 + 32, false};
    rd_encoded(&c, hdr[1], hbase);                 /* eh_frame_ptr */
    uint64_t count = rd_encoded(&c, hdr[2], hbase);
    if (c.bad || count == 0) return bad;
    const uint8_t *table = c.p; /* (start, fde) pairs of int32, relative to hbase */
#define TB_ENTRY(i, k) (hbase + (intptr_t)rd_i32(table + 8 * (i) + 4 * (k)))
    uint64_t lo = 0, hi = count;
    while (hi - lo > 1) { /* last entry whose start <= target */
        uint64_t mid = (lo + hi) / 2;
        if (TB_ENTRY(mid, 0) <= target) lo = mid;
        else hi = mid;
    }
    if (TB_ENTRY(lo, 0) > target) return bad;
    const uint8_t *fde = (const uint8_t *)TB_ENTRY(lo, 1);
#undef TB_ENTRY
    uint32_t flen;
    memcpy(&flen, fde, 4);
    if (flen == 0 || flen == 0xffffffffu) return bad;
    int32_t cie_delta;
    memcpy(&cie_delta, fde + 4, 4);
    const uint8_t *cie = fde + 4 - cie_delta;
    uint32_t clen;
    memcpy(&clen, cie, 4);
    if (clen == 0 || clen == 0xffffffffu) return bad;
    /* CIE: id, version, augmentation, alignments, return register, augmentation data. */
    cfi_cursor cc = {cie + 8, cie + 4 + clen, false};
    uint8_t version = (uint8_t)rd_fixed(&cc, 1);
    const char *aug = (const char *)cc.p;
    size_t auglen = strnlen(aug, (size_t)(cc.end - cc.p));
    cc.p += auglen + 1;
    if (version != 1 && version != 3) return bad;
    uint64_t code_align = rd_uleb(&cc);
    int64_t data_align = rd_sleb(&cc);
    uint64_t ra_reg = version == 1 ? rd_fixed(&cc, 1) : rd_uleb(&cc);
    uint8_t fde_enc = 0;
    bool has_z = aug[0] == 'z';
    if (ra_reg != 16) return bad;
    if (has_z) {
        uint64_t n = rd_uleb(&cc);
        const uint8_t *aug_end = cc.p + n;
        for (size_t i = 1; i < auglen; i++) {
            switch (aug[i]) {
            case 'R': fde_enc = (uint8_t)rd_fixed(&cc, 1); break;
            case 'L': rd_fixed(&cc, 1); break;
            case 'P': {
                uint8_t e = (uint8_t)rd_fixed(&cc, 1);
                rd_encoded(&cc, e & 0x7f, 0);
                break;
            }
            case 'S': return bad; /* a signal frame: leave it to libgcc */
            default: return bad;
            }
        }
        cc.p = aug_end;
    } else if (auglen != 0) {
        return bad;
    }
    if (cc.bad) return bad;
    cfi_state s;
    memset(&s, 0, sizeof s);
    s.cfa_reg = 7;
    uintptr_t loc = 0;
    if (!cfi_run(&cc, &s, &s, &loc, UINTPTR_MAX, code_align, data_align, fde_enc)) return bad;
    cfi_state initial = s;
    /* FDE: pc_begin, pc_range, augmentation data, instructions. */
    cfi_cursor fc = {fde + 8, fde + 4 + flen, false};
    uintptr_t begin = rd_encoded(&fc, fde_enc, 0);
    uintptr_t range = rd_encoded(&fc, fde_enc & 0x0f, 0);
    if (fc.bad || target < begin || target - begin >= range) return bad;
    if (has_z) fc.p += rd_uleb(&fc);
    loc = begin;
    if (!cfi_run(&fc, &s, &initial, &loc, target, code_align, data_align, fde_enc)) return bad;
    if (s.ra_how == 2) return (cfi_rule){RULE_END, 0, 0, 0, 0};
    if (s.cfa_expr || (s.cfa_reg != 6 && s.cfa_reg != 7) || s.ra_how != 1 || s.ra_off != -8 || s.rbp_how >= 2 ||
        s.cfa_off < 0 || s.cfa_off > INT32_MAX || s.rbp_off < INT32_MIN || s.rbp_off > INT32_MAX)
        return bad;
    return (cfi_rule){RULE_OK, s.cfa_reg == 6, s.rbp_how == 1, (int32_t)s.cfa_off, (int32_t)s.rbp_off};
}

/* ---- the rule cache: 2-way set-associative by return address, behind a leaf lock ---- */

/* 1024 rules, 24 KiB: hashing scatters entries over every page, so the table's size is
 * what it adds to RSS once a program has sampled from a few dozen call sites. Two ways per
 * set: direct-mapped, two return addresses of one hot stack that hashed alike evicted each
 * other on every sample (a rebuild of gomalloc moved its own return addresses so that
 * bench/mstress-2t spent 2.7% of its time in the CFI unwinder instead of 0.6%). */
#define TB_CACHE 1024
#define TB_CACHE_SHIFT 54 /* 64 - log2(TB_CACHE) */
typedef struct cache_entry {
    uintptr_t pc;
    cfi_rule rule;
} cache_entry;
static cache_entry tb_cache[TB_CACHE]; /* .bss: touched only by profiling */
static gm_lock_t tb_lock = GM_LOCK_INIT;

static cfi_rule rule_for(uintptr_t pc) {
    cache_entry *e = &tb_cache[((pc * 0x9E3779B97F4A7C15ull) >> TB_CACHE_SHIFT) & ~(uint64_t)1];
    if (e[0].pc == pc) return e[0].rule;
    if (e[1].pc == pc) return e[1].rule;
    cfi_rule r = cfi_compute(pc);
    e[1] = e[0]; /* the newer rule stays, the older goes */
    e[0] = (cache_entry){pc, r};
    return r;
}

/* The caller's state at the call: its return address (a pc in the caller), its stack
 * pointer after the call returns, and rbp. Written in assembly so nothing the compiler
 * does to this function can change the three values; it has no CFI and is never
 * unwound through: the walk starts in its caller. */
void tb_get_regs(uintptr_t regs[3]);
__asm__(".text\n"
        ".p2align 4\n"
        ".globl tb_get_regs\n"
        ".hidden tb_get_regs\n"
        ".type tb_get_regs, @function\n"
        "tb_get_regs:\n"
        "  movq (%rsp), %rax\n"
        "  movq %rax, 0(%rdi)\n"
        "  leaq 8(%rsp), %rax\n"
        "  movq %rax, 8(%rdi)\n"
        "  movq %rbp, 16(%rdi)\n"
        "  ret\n"
        ".size tb_get_regs, .-tb_get_regs\n");

/* Walks frames by cached CFI rules. Returns the depth, or -1 when some frame needs what
 * the rules do not model (the caller then asks libgcc). Every CFA must lie above the
 * previous one, so the walk only moves up the stack and always ends. */
static GM_NOINLINE int capture_cfi(uintptr_t *pcs, unsigned max, bool skip_self) {
    uintptr_t regs[3];
    tb_get_regs(regs);
    uintptr_t pc = regs[0], sp = regs[1], bp = regs[2];
    unsigned n = 0;
    bool skipping = skip_self;
    int result = -1;
    gm_lock(&tb_lock);
    for (unsigned steps = 0; steps < max + 32; steps++) {
        cfi_rule r = rule_for(pc);
        if (r.kind == RULE_END) break;
        if (r.kind != RULE_OK) goto out;
        uintptr_t cfa = (r.cfa_rbp ? bp : sp) + (uintptr_t)(intptr_t)r.cfa_off;
        if (cfa <= sp || (cfa & 7) != 0) goto out;
        uintptr_t ra = *(const uintptr_t *)(cfa - 8);
        if (r.rbp_saved) {
            uintptr_t at = cfa + (uintptr_t)(intptr_t)r.rbp_off;
            if ((at & 7) != 0) goto out;
            bp = *(const uintptr_t *)at;
        }
        sp = cfa;
        pc = ra;
        if (pc == 0) break;
        if (skipping && is_self(pc)) continue;
        skipping = false;
        pcs[n++] = pc;
        if (n == max) break;
    }
    result = (int)n;
out:
    gm_unlock(&tb_lock);
    return result;
}
#endif /* TB_CFI */

void traceback_lock(void) {
#ifdef TB_CFI
    gm_lock(&tb_lock);
#endif
}
void traceback_unlock(void) {
#ifdef TB_CFI
    gm_unlock(&tb_lock);
#endif
}
void traceback_fork_child(void) {
#ifdef TB_CFI
    gm_lock_reset(&tb_lock);
#endif
}

int traceback_capture(uintptr_t *pcs, unsigned max, int method) {
    know_self();
#ifdef TB_CFI
    if (method != TRACEBACK_LIBGCC) {
        int n = capture_cfi(pcs, max, method == TRACEBACK_AUTO);
        if (n >= 0 || method == TRACEBACK_CFI) return n;
    }
#else
    if (method == TRACEBACK_CFI) return -1;
#endif
    return (int)capture_libgcc(pcs, max, method == TRACEBACK_AUTO);
}

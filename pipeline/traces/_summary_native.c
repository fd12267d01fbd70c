/* The summary's hot loop in C: ``summary._summarize_strict`` for the common, well-typed trace line.
 *
 * A line is taken here only when it is certain to read as ``summary_records.SummaryRecord`` reads it: one JSON
 * object of the known fields, each at most once, keys and the strings the summary reads without escapes, numbers
 * that need no range check beyond the plain ones done here. Every other line (and a line whose action the lenient
 * decoder would not take) goes to ``slow(i, raw)``, the Python path, which gives the line's row as it always did;
 * so the rows are those of the Python path, line by line (``tests/test_traces_summary_native.py`` compares them on
 * generated lines). The per-episode state is the same Python objects the Python path reads and changes; the open runs
 * and no-progress count of the episode of the last tick are read out of them once and kept here while that episode's
 * ticks follow one another, and written back before any Python code that reads them runs.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

enum {
    F_SCHEMA, F_KIND, F_RUN_ID, F_EPISODE, F_TS, F_TS_ESTIMATED, F_CONTEXT_WINDOW, F_TICK, F_LATENCY,
    F_CONTEXT_CHARS, F_CONTEXT, F_ACTION, F_SCHEMA_ERROR, F_OUTCOME, F_ERROR_CLASS, F_ERROR, F_OBSERVATION,
    F_TRAP, F_CHAIN_ID, F_CHAIN_ROLE, F_RECOVERY, F_PROGRESS, F_REASON, N_FIELDS
};

/* What a field's value may be for the line to be taken here. */
enum { T_ANY, T_KIND, T_STR, T_RECOVERY, T_BOOL, T_INT32, T_SIZE32, T_NUMBER, T_RAW };

static const struct {
    const char *name;
    int type;
} FIELDS[N_FIELDS] = {
    {"schema", T_ANY}, {"kind", T_KIND}, {"run_id", T_ANY}, {"episode", T_STR}, {"ts", T_ANY},
    {"ts_estimated", T_ANY}, {"context_window", T_ANY}, {"tick", T_INT32}, {"latency_s", T_NUMBER},
    {"context_chars", T_SIZE32}, {"context", T_ANY}, {"action", T_RAW}, {"schema_error", T_STR},
    {"outcome", T_STR}, {"error_class", T_STR}, {"error", T_ANY}, {"observation", T_ANY}, {"trap", T_STR},
    {"chain_id", T_STR}, {"chain_role", T_STR}, {"recovery", T_RECOVERY}, {"progress", T_BOOL},
    {"reason", T_ANY},
};

/* A decoded field: absent or null (V_NONE), a boolean, a string (its bytes, no escapes), a number. */
enum { V_NONE, V_FALSE, V_TRUE, V_STR, V_INT, V_FLOAT, V_RAW };

typedef struct {
    int tag;
    const char *s;
    Py_ssize_t n;
    long long i;
    double d;
} Value;

#define OK 0
#define BAIL (-1)
#define MAX_DEPTH 64
#define MAX_DIGITS 18


static inline const char *skip_ws(const char *p, const char *end) {
    if (p < end && (unsigned char)*p > ' ') return p; /* the common case: no white space */
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) p++;
    return p;
}

static inline int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* p advanced over the bytes that are not a quote, a backslash or a control character (sixteen or eight at a time). */
#ifdef __SSE2__
/* The bytes of the 16 at p that end a run of plain ones (a quote, a backslash, a control character), as bits; bytes
 * past ``end`` read as zero, a control character, so a run never goes past the end. */
static inline unsigned stop_mask16(const char *p, const char *end) {
    const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\'), control = _mm_set1_epi8(0x1f);
    __m128i x;
    if (end - p >= 16) {
        x = _mm_loadu_si128((const __m128i *)p);
    } else {
        char tail[16] = {0};
        memcpy(tail, p, (size_t)(end - p));
        x = _mm_loadu_si128((const __m128i *)tail);
    }
    __m128i stop = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, quote), _mm_cmpeq_epi8(x, backslash)),
                                _mm_cmpeq_epi8(_mm_max_epu8(x, control), control));
    return (unsigned)_mm_movemask_epi8(stop);
}

static inline const char *plain_run(const char *p, const char *end) {
    for (; p < end; p += 16) {
        unsigned mask = stop_mask16(p, end);
        if (mask) {
            const char *at = p + __builtin_ctz(mask);
            return at < end ? at : end;
        }
    }
    return p;
}
#else
static inline const char *plain_run(const char *p, const char *end) {
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    for (;;) {
        Py_ssize_t left = end - p;
        uint64_t x = 0;
        if (left >= 8) {
            memcpy(&x, p, 8);
        } else if (left > 0) {
            memcpy(&x, p, (size_t)left); /* the zero bytes after the end stop the run there */
        } else {
            return p;
        }
        uint64_t q = x ^ (ones * '"'), b = x ^ (ones * '\\');
        uint64_t stop = (((q - ones) & ~q) | ((b - ones) & ~b) | ((x - ones * 0x20) & ~x)) & highs;
        if (stop) {
            /* the lowest flagged byte is a true one (a false flag needs a borrow from a true one below it) */
            const char *at = p + (__builtin_ctzll(stop) >> 3);
            return at < end ? at : end;
        }
        p += 8;
    }
}
#endif

/* The length of the escape at ``at`` (a backslash): 2, or 6 for ``\uXXXX``; 0 for an unknown escape, an escaped
 * surrogate (the Python path decides) or one cut by the end. */
static inline Py_ssize_t escape_length(const char *at, const char *end) {
    if (at + 1 >= end) return 0;
    char e = at[1];
    if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' || e == 'r' || e == 't') return 2;
    if (e != 'u' || at + 6 > end) return 0;
    int code = 0;
    for (int k = 2; k < 6; k++) {
        int h = hexval(at[k]);
        if (h < 0) return 0;
        code = code * 16 + h;
    }
    return code >= 0xD800 && code <= 0xDFFF ? 0 : 6;
}

#ifdef __SSE2__
/* A string from just after its opening quote: *pp ends just after the closing quote. BAIL on a control character,
 * an unknown escape, an escaped surrogate, or a string not closed on the line. The escapes of a 16-byte window are
 * taken from its one mask (a string of escaped JSON or code has one every few bytes). */
static inline __attribute__((always_inline)) int scan_string(const char **pp, const char *end, int *escaped) {
    const char *p = *pp;
    *escaped = 0;
    while (p < end) {
        unsigned mask = stop_mask16(p, end);
        const char *next = p + 16;
        while (mask) {
            const char *at = p + __builtin_ctz(mask);
            if (at >= end) return BAIL;
            if (*at == '"') {
                *pp = at + 1;
                return OK;
            }
            if (*at != '\\') return BAIL; /* a control character */
            Py_ssize_t skip = escape_length(at, end);
            if (skip == 0) return BAIL;
            *escaped = 1;
            Py_ssize_t off = at + skip - p;
            if (off >= 16) { /* the escape reaches into the next window */
                next = at + skip;
                break;
            }
            mask &= ~0u << off;
        }
        p = next;
    }
    return BAIL;
}
#else
static inline __attribute__((always_inline)) int scan_string(const char **pp, const char *end, int *escaped) {
    const char *p = *pp;
    *escaped = 0;
    for (;;) {
        p = plain_run(p, end);
        if (p >= end) return BAIL;
        char c = *p;
        if (c == '"') {
            *pp = p + 1;
            return OK;
        }
        if (c != '\\') return BAIL; /* a control character */
        Py_ssize_t skip = escape_length(p, end);
        if (skip == 0) return BAIL;
        *escaped = 1;
        p += skip;
    }
}
#endif

/* A decimal without exponent of at most 15 digits, exactly: the digits and the power of ten are exact doubles, so
 * one division rounds correctly, as strtod does. 0: not such a number. */
static int short_decimal(const char *start, const char *end, double *out) {
    static const double POW10[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14,
                                   1e15};
    int negative = *start == '-';
    int64_t m = 0;
    int digits = 0, frac = 0, in_frac = 0;
    for (const char *q = start + negative; q < end; q++) {
        if (*q == '.') {
            in_frac = 1;
            continue;
        }
        if (++digits > 15) return 0;
        m = m * 10 + (*q - '0');
        frac += in_frac;
    }
    double d = (double)m / POW10[frac];
    *out = negative ? -d : d;
    return 1;
}

/* p advanced over its run of ASCII digits, eight at a time. A byte is a digit when its high nibble is 3 and adding 6
 * leaves it so; adding 6 carries into the next byte only from a byte >= 0xFA, which valid UTF-8 never holds (and a
 * carry only reaches bytes above the non-digit it comes from, so the lowest non-digit found is still the true one). */
static inline const char *digits_end(const char *p, const char *end) {
    const uint64_t highs = 0xF0F0F0F0F0F0F0F0ULL, threes = 0x3030303030303030ULL, sixes = 0x0606060606060606ULL;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ /* (the lowest byte read is the first) */
    while (end - p >= 8) {
        uint64_t x;
        memcpy(&x, p, 8);
        uint64_t other = ((x & highs) ^ threes) | (((x + sixes) & highs) ^ threes);
        if (other) return p + (__builtin_ctzll(other) >> 3);
        p += 8;
    }
#else
    (void)highs, (void)threes, (void)sixes;
#endif
    while (p < end && *p >= '0' && *p <= '9') p++;
    return p;
}

/* A number by JSON's grammar. *is_int: no fraction and no exponent. BAIL on what is not JSON, on an integer of more
 * than MAX_DIGITS digits and on a number that does not convert to a finite double (or underflows). */
static inline __attribute__((always_inline)) int scan_number(const char **pp, const char *end, Value *v, int want_value) {
    const char *p = *pp, *start = p;
    int is_int = 1, has_exp = 0;
    if (p < end && *p == '-') p++;
    if (p >= end) return BAIL;
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        p = digits_end(p + 1, end);
    } else {
        return BAIL;
    }
    if (p < end && *p == '.') {
        is_int = 0;
        p++;
        if (p >= end || !(*p >= '0' && *p <= '9')) return BAIL;
        p = digits_end(p + 1, end);
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        is_int = 0;
        has_exp = 1;
        p++;
        if (p < end && (*p == '+' || *p == '-')) p++;
        if (p >= end || !(*p >= '0' && *p <= '9')) return BAIL;
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    Py_ssize_t n = p - start;
    if (is_int) {
        Py_ssize_t digits = n - (*start == '-');
        if (digits > MAX_DIGITS) return BAIL;
        if (*start == '-' && n == 2 && start[1] == '0') return BAIL; /* -0 */
        v->tag = V_INT;
        if (want_value) {
            long long value = 0;
            for (const char *q = start + (*start == '-'); q < p; q++) value = value * 10 + (*q - '0');
            v->i = *start == '-' ? -value : value;
        }
    } else if (want_value && !has_exp && short_decimal(start, p, &v->d)) {
        v->tag = V_FLOAT;
    } else if (!want_value && !has_exp && n < 300) {
        v->tag = V_FLOAT; /* no exponent: below 1e300, finite, and not rounded to zero unless it is zero */
    } else {
        char buf[64];
        if (n >= (Py_ssize_t)sizeof(buf)) return BAIL;
        memcpy(buf, start, (size_t)n);
        buf[n] = '\0';
        errno = 0;
        char *stop = NULL;
        double d = strtod(buf, &stop);
        if (stop != buf + n || errno != 0 || !isfinite(d)) return BAIL;
        v->tag = V_FLOAT;
        v->d = d;
    }
    *pp = p;
    return OK;
}

static int scan_literal(const char **pp, const char *end, const char *word, Py_ssize_t n) {
    if (end - *pp < n || memcmp(*pp, word, (size_t)n) != 0) return BAIL;
    *pp += n;
    return OK;
}

/* Any JSON value, checked and skipped. */
static int skip_value(const char **pp, const char *end, int depth) {
    const char *p = *pp;
    if (p >= end) return BAIL;
    char c = *p;
    int escaped;
    Value v;
    if (c == '"') {
        p++;
        if (scan_string(&p, end, &escaped) != OK) return BAIL;
    } else if (c == '{' || c == '[') {
        if (depth >= MAX_DEPTH) return BAIL;
        char close = c == '{' ? '}' : ']';
        p = skip_ws(p + 1, end);
        if (p < end && *p == close) {
            p++;
        } else {
            for (;;) {
                if (c == '{') {
                    if (p >= end || *p != '"') return BAIL;
                    p++;
                    if (scan_string(&p, end, &escaped) != OK) return BAIL;
                    p = skip_ws(p, end);
                    if (p >= end || *p != ':') return BAIL;
                    p = skip_ws(p + 1, end);
                }
                if (skip_value(&p, end, depth + 1) != OK) return BAIL;
                p = skip_ws(p, end);
                if (p >= end) return BAIL;
                if (*p == ',') {
                    p = skip_ws(p + 1, end);
                    continue;
                }
                if (*p != close) return BAIL;
                p++;
                break;
            }
        }
    } else if (c == 't') {
        if (scan_literal(&p, end, "true", 4) != OK) return BAIL;
    } else if (c == 'f') {
        if (scan_literal(&p, end, "false", 5) != OK) return BAIL;
    } else if (c == 'n') {
        if (scan_literal(&p, end, "null", 4) != OK) return BAIL;
    } else {
        if (scan_number(&p, end, &v, 0) != OK) return BAIL;
    }
    *pp = p;
    return OK;
}

/* Any JSON value, checked and skipped: a string or a number (most of what is skipped) without skip_value's
 * dispatch. */
static inline int skip_any(const char **pp, const char *end) {
    const char *p = *pp;
    if (p < end && *p == '"') {
        int escaped;
        p++;
        if (scan_string(&p, end, &escaped) != OK) return BAIL;
        *pp = p;
        return OK;
    }
    return skip_value(pp, end, 1);
}

/* The value of a field of type ``type`` into v. */
static int scan_field(const char **pp, const char *end, int type, Value *v) {
    const char *p = *pp;
    if (p >= end) return BAIL;
    char c = *p;
    v->tag = V_NONE;
    if (type == T_ANY || type == T_RAW) {
        const char *start = p;
        if (skip_any(&p, end) != OK) return BAIL;
        if (type == T_RAW) {
            v->tag = V_RAW;
            v->s = start;
            v->n = p - start;
        }
        *pp = p;
        return OK;
    }
    if (c == 'n') {
        if (type == T_KIND || scan_literal(&p, end, "null", 4) != OK) return BAIL;
    } else if (c == 't' || c == 'f') {
        if (type != T_BOOL && type != T_RECOVERY) return BAIL;
        if (c == 't') {
            if (scan_literal(&p, end, "true", 4) != OK) return BAIL;
            v->tag = V_TRUE;
        } else {
            if (scan_literal(&p, end, "false", 5) != OK) return BAIL;
            v->tag = V_FALSE;
        }
    } else if (c == '"') {
        if (type != T_STR && type != T_RECOVERY && type != T_KIND) return BAIL;
        int escaped;
        p++;
        const char *start = p;
        if (scan_string(&p, end, &escaped) != OK || escaped) return BAIL;
        v->tag = V_STR;
        v->s = start;
        v->n = p - 1 - start;
    } else {
        if (type != T_INT32 && type != T_SIZE32 && type != T_NUMBER) return BAIL;
        if (scan_number(&p, end, v, 1) != OK) return BAIL;
        if (type != T_NUMBER) {
            if (v->tag != V_INT) return BAIL;
            long long low = type == T_SIZE32 ? 0 : -2147483648LL;
            if (v->i < low || v->i > 2147483647LL) return BAIL;
        }
    }
    *pp = p;
    return OK;
}

static Py_ssize_t FIELD_LEN[N_FIELDS];

/* The field named by the n bytes at s (-1: not one the summary reads); ``expect`` is tried first (the writer's
 * order makes it the next field of most lines). */
#define MAX_NAME 16
static int8_t BY_LEN[MAX_NAME][N_FIELDS + 1]; /* the fields of each name length, -1 ended */

/* The first n (< 16) of 16 bytes as two masked words: a short name compared without a call. */
typedef struct {
    uint64_t word[2], mask[2];
} Words16;

/* The first n of the 16 bytes at s. */
static void words16_of(Words16 *w, const char *s, Py_ssize_t n) {
    w->mask[0] = n >= 8 ? ~0ULL : (1ULL << (8 * n)) - 1;
    w->mask[1] = n > 8 ? (1ULL << (8 * (n - 8))) - 1 : 0;
    memcpy(&w->word[0], s, 8);
    memcpy(&w->word[1], s + 8, 8);
    w->word[0] &= w->mask[0];
    w->word[1] &= w->mask[1];
}

/* The 16 bytes at s start with w's bytes. */
static inline int words16_match(const Words16 *w, const char *s) {
    uint64_t a, b;
    memcpy(&a, s, 8);
    memcpy(&b, s + 8, 8);
    return (a & w->mask[0]) == w->word[0] && (b & w->mask[1]) == w->word[1];
}

static Words16 NAME_WORDS[N_FIELDS]; /* each field's name */

/* The n bytes at s (n < MAX_NAME, the length of field k's name) are that name: two 8-byte words compared when 16
 * bytes can be read from s before the line's end, else memcmp. */
static inline int name_is(const char *s, const char *end, Py_ssize_t n, int k) {
    if (end - s < 16) return memcmp(FIELDS[k].name, s, (size_t)n) == 0;
    return words16_match(&NAME_WORDS[k], s);
}

static inline int field_index(const char *s, const char *end, Py_ssize_t n, int expect) {
    if (n >= MAX_NAME) return -1;
    if (expect < N_FIELDS && FIELD_LEN[expect] == n && name_is(s, end, n, expect)) return expect;
    for (const int8_t *k = BY_LEN[n]; *k >= 0; k++) {
        if (name_is(s, end, n, *k)) return *k;
    }
    return -1;
}

/* The keys of the line before, by position: the lines of one writer give theirs in one order, so a key is mostly
 * the bytes of the key at the same place in the line before (compared as two words, with its closing quote), and
 * need not be scanned and looked up again. A key of 16 bytes or more is not kept. */
#define SHAPE_KEYS 32
typedef struct {
    Words16 key;
    Py_ssize_t n; /* 0: none kept */
    int field;    /* field_index of the key, -1 for one the summary does not read */
} KeyShape;

/* The n bytes at s (16 readable) kept as the key of the field k. */
static void shape_keep(KeyShape *ks, const char *s, Py_ssize_t n, int k) {
    words16_of(&ks->key, s, n);
    ks->n = n;
    ks->field = k;
}

/* The bytes at s (16 readable) start with the kept key and its closing quote. */
static inline int shape_is(const KeyShape *ks, const char *s) {
    return ks->n > 0 && words16_match(&ks->key, s) && s[ks->n] == '"';
}

/* The line as a SummaryRecord would read it, or BAIL. ``shape``: the keys of the line before (SHAPE_KEYS of them),
 * updated with this line's. */
static int parse_line(const char *p, const char *end, Value *vals, KeyShape *shape) {
    unsigned int seen = 0;
    int expect = 0; /* the field the writer's order puts next */
#pragma GCC unroll 32 /* (one store a field: the loop cost ~4 instructions a field, ~90 a line) */
    for (int k = 0; k < N_FIELDS; k++) vals[k].tag = V_NONE;
    p = skip_ws(p, end);
    if (p >= end || *p != '{') return BAIL;
    p = skip_ws(p + 1, end);
    if (p < end && *p == '}') return BAIL; /* no kind */
    for (int pos = 0;; pos++) {
        if (p >= end || *p != '"') return BAIL;
        p++;
        KeyShape *ks = pos < SHAPE_KEYS ? &shape[pos] : NULL;
        int k;
        if (ks != NULL && end - p >= 16 && shape_is(ks, p)) { /* (its closing quote is before the end) */
            k = ks->field;
            p += ks->n + 1;
        } else {
            const char *key = p;
            p = plain_run(p, end);
            if (p >= end || *p != '"') return BAIL;
            Py_ssize_t n = p - key;
            p++;
            k = field_index(key, end, n, expect);
            if (ks != NULL && n > 0 && n < 16 && end - key >= 16) shape_keep(ks, key, n, k);
        }
        if (k >= 0) {
            if (seen & (1u << k)) return BAIL; /* a field given twice */
            seen |= 1u << k;
            expect = k + 1;
        }
        if (p < end && *p == ':') { /* (the writers' form: no white space around the colon and the comma) */
            p++;
        } else {
            p = skip_ws(p, end);
            if (p >= end || *p != ':') return BAIL;
            p++;
        }
        p = skip_ws(p, end);
        if (k < 0) {
            /* a field the summary does not read: checked as msgspec checks what it skips, at most */
            if (skip_any(&p, end) != OK) return BAIL;
        } else if (scan_field(&p, end, FIELDS[k].type, &vals[k]) != OK) {
            return BAIL;
        }
        if (p < end && *p == ',') {
            p = skip_ws(p + 1, end);
            continue;
        }
        p = skip_ws(p, end);
        if (p >= end) return BAIL;
        if (*p == ',') {
            p = skip_ws(p + 1, end);
            continue;
        }
        if (*p != '}') return BAIL;
        p = skip_ws(p + 1, end);
        if (p != end) return BAIL;
        break;
    }
    if (!(seen & (1u << F_KIND))) return BAIL;
    return OK;
}

/* ---- the summary ---- */

enum { K_UNKNOWN = 0, K_START = 1, K_TICK = 2, K_END = 3 };

static PyObject *str_runs, *str_no_progress, *str_chain_lines, *str_last, *str_failure, *str_aborted, *empty_bytes;
static PyObject *str_append, *str_blob, *str_ends, *str_tags, *str_table, *str_grow, *str_intern;

static PyObject *value_object(const Value *v) {
    switch (v->tag) {
        case V_NONE: Py_RETURN_NONE;
        case V_TRUE: Py_RETURN_TRUE;
        case V_FALSE: Py_RETURN_FALSE;
        case V_STR: return PyUnicode_DecodeUTF8(v->s, v->n, "strict");
        case V_INT: return PyLong_FromLongLong(v->i);
        case V_FLOAT: return PyFloat_FromDouble(v->d);
        default: PyErr_SetString(PyExc_SystemError, "unexpected value"); return NULL;
    }
}

/* A tick's fields its own flags come from, in the order of ``summary_records.tick_flags``'s key. */
static const int FLAG_FIELDS[7] = {F_OUTCOME, F_CHAIN_ROLE, F_ERROR_CLASS, F_TRAP, F_RECOVERY, F_SCHEMA_ERROR,
                                   F_PROGRESS};

/* The bytes that stand for a tick's seven flag fields (the key of the C-side cache), into buf; -1 if too long. */
static Py_ssize_t flag_key(const Value *vals, char *buf, Py_ssize_t size) {
    Py_ssize_t n = 0;
    for (int j = 0; j < 7; j++) {
        const Value *v = &vals[FLAG_FIELDS[j]];
        if (n + 1 + (Py_ssize_t)sizeof(uint32_t) > size) return -1;
        buf[n++] = (char)('0' + v->tag);
        if (v->tag == V_STR) {
            uint32_t len = (uint32_t)v->n;
            if (n + (Py_ssize_t)sizeof(len) + v->n > size) return -1;
            memcpy(buf + n, &len, sizeof(len));
            n += sizeof(len);
            memcpy(buf + n, v->s, (size_t)v->n);
            n += v->n;
        }
    }
    return n;
}

typedef struct {
    int8_t *kind;
    uint16_t *flags;
    int32_t *episode, *tick, *chain, *context;
    float *latency;
    Py_ssize_t n;
    long tick_min, tick_max, context_min, context_max;
} Out;

static void put_row(Out *o, long kind, long flags, long episode, long tick, long chain, long context, double latency) {
    Py_ssize_t n = o->n++;
    o->kind[n] = (int8_t)kind;
    o->flags[n] = (uint16_t)flags;
    o->episode[n] = (int32_t)episode;
    o->tick[n] = (int32_t)tick;
    o->chain[n] = (int32_t)chain;
    o->context[n] = (int32_t)context;
    o->latency[n] = (float)latency;
    if (tick < o->tick_min) o->tick_min = tick;
    if (tick > o->tick_max) o->tick_max = tick;
    if (context < o->context_min) o->context_min = context;
    if (context > o->context_max) o->context_max = context;
}

static double latency_value(const Value *v) {
    if (v->tag == V_INT) return (double)v->i;
    if (v->tag == V_FLOAT) return v->d;
    return Py_NAN;
}

/* A table of what a batch has looked up already, keyed by raw bytes (the action's text, a tick's flag fields): the
 * Python caches behind it are asked once per distinct key and batch. Holds strong references until the batch ends.
 * It starts small (a handful of flag keys stay in a few cache lines) and doubles when half full, up to MEMO_MAX
 * slots (a 4 MiB batch of a 1 GB trace held ~600 distinct actions; beyond, the Python caches answer the rest). */
#define MEMO_FIRST 256
#define MEMO_MAX (1 << 16)
typedef struct {
    uint64_t hash;
    PyObject *key; /* bytes */
    PyObject *value;
} MemoEntry;

typedef struct {
    MemoEntry *e; /* NULL until the first put */
    size_t mask;
    size_t used;
} Memo;

static inline uint64_t hash_bytes(const char *p, Py_ssize_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ULL ^ (uint64_t)n;
    while (n >= 8) {
        uint64_t x;
        memcpy(&x, p, 8);
        h = (h ^ x) * 0xFF51AFD7ED558CCDULL;
        h ^= h >> 32;
        p += 8;
        n -= 8;
    }
    uint64_t x = 0;
    memcpy(&x, p, (size_t)n);
    h = (h ^ x) * 0xC4CEB9FE1A85EC53ULL;
    return h ^ (h >> 29);
}

static PyObject *memo_get(Memo *m, const char *p, Py_ssize_t n, uint64_t h) {
    if (m->e == NULL) return NULL;
    for (size_t k = h & m->mask;; k = (k + 1) & m->mask) {
        MemoEntry *e = &m->e[k];
        if (e->key == NULL) return NULL;
        if (e->hash == h && PyBytes_GET_SIZE(e->key) == n && memcmp(PyBytes_AS_STRING(e->key), p, (size_t)n) == 0)
            return e->value;
    }
}

/* The slots of m, ``size`` of them (a power of two), its entries placed again; 0 (m unchanged) without memory. */
static int memo_resize(Memo *m, size_t size) {
    MemoEntry *e = PyMem_Calloc(size, sizeof(MemoEntry));
    if (e == NULL) return 0;
    if (m->e != NULL) {
        for (size_t k = 0; k <= m->mask; k++) {
            if (m->e[k].key == NULL) continue;
            size_t j = m->e[k].hash & (size - 1);
            while (e[j].key != NULL) j = (j + 1) & (size - 1);
            e[j] = m->e[k];
        }
        PyMem_Free(m->e);
    }
    m->e = e;
    m->mask = size - 1;
    return 1;
}

static void memo_put(Memo *m, PyObject *key, PyObject *value, uint64_t h) {
    size_t size = m->e == NULL ? 0 : m->mask + 1;
    if (2 * (m->used + 1) > size) {
        if (size >= MEMO_MAX || !memo_resize(m, size ? 2 * size : MEMO_FIRST)) return; /* (the caches answer) */
    }
    size_t k = h & m->mask;
    while (m->e[k].key != NULL) k = (k + 1) & m->mask;
    m->e[k] = (MemoEntry){h, Py_NewRef(key), Py_NewRef(value)};
    m->used++;
}

static void memo_clear(Memo *m) {
    if (m->e != NULL) {
        for (size_t k = 0; k <= m->mask; k++) {
            Py_XDECREF(m->e[k].key);
            Py_XDECREF(m->e[k].value);
        }
        PyMem_Free(m->e);
    }
    *m = (Memo){NULL, 0, 0};
}

/* str equality (the same code points), without a call: both are ready, canonical str objects. */
static inline int str_eq(PyObject *a, PyObject *b) {
    if (a == b) return 1;
    Py_ssize_t n = PyUnicode_GET_LENGTH(a);
    return n == PyUnicode_GET_LENGTH(b) && PyUnicode_KIND(a) == PyUnicode_KIND(b) &&
           memcmp(PyUnicode_DATA(a), PyUnicode_DATA(b), (size_t)n * PyUnicode_KIND(a)) == 0;
}

/* One open run: a verb key (``summary_records``' verb, or INVALID_VERB), an error class, the failures in a row. The
 * dict ``{verb: {error_class: count}}`` of ``_EpisodeRuns.runs``, flattened in the dicts' order. */
typedef struct {
    PyObject *verb, *cls;
    long count;
    Py_ssize_t tool_len; /* the length of the verb's tool name (before its first ':'), for ``open_success`` */
    int invalid;         /* the verb key is INVALID_VERB */
} OpenRun;

typedef struct {
    OpenRun *runs;
    Py_ssize_t n, cap;
    int changed;
} OpenRuns;

static void open_clear(OpenRuns *o) {
    for (Py_ssize_t k = 0; k < o->n; k++) {
        Py_DECREF(o->runs[k].verb);
        Py_DECREF(o->runs[k].cls);
    }
    o->n = 0;
    o->changed = 0;
}

static int open_push(OpenRuns *o, PyObject *verb, PyObject *cls, long count, PyObject *invalid_verb) {
    if (!PyUnicode_Check(verb) || !PyUnicode_Check(cls)) {
        PyErr_SetString(PyExc_TypeError, "a run's verb and error class must be str");
        return -1;
    }
    if (o->n == o->cap) {
        Py_ssize_t cap = o->cap ? 2 * o->cap : 8;
        OpenRun *grown = PyMem_Realloc(o->runs, (size_t)cap * sizeof(OpenRun));
        if (grown == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        o->runs = grown;
        o->cap = cap;
    }
    Py_ssize_t len = PyUnicode_GET_LENGTH(verb);
    Py_ssize_t colon = PyUnicode_FindChar(verb, ':', 0, len, 1);
    if (colon == -2) return -1;
    o->runs[o->n++] = (OpenRun){Py_NewRef(verb), Py_NewRef(cls), count, colon < 0 ? len : colon,
                                str_eq(verb, invalid_verb)};
    return 0;
}

/* The open runs of ``dict`` (``{verb: {error_class: count}}``) into ``o``. */
static int open_load(OpenRuns *o, PyObject *dict, PyObject *invalid_verb) {
    open_clear(o);
    Py_ssize_t pos = 0;
    PyObject *verb, *counts;
    while (PyDict_Next(dict, &pos, &verb, &counts)) {
        if (!PyDict_Check(counts)) {
            PyErr_SetString(PyExc_TypeError, "a verb's runs must be a dict");
            return -1;
        }
        Py_ssize_t inner = 0;
        PyObject *cls, *count;
        while (PyDict_Next(counts, &inner, &cls, &count)) {
            long n = PyLong_AsLong(count);
            if (n == -1 && PyErr_Occurred()) return -1;
            if (open_push(o, verb, cls, n, invalid_verb) < 0) return -1;
        }
    }
    return 0;
}

/* ``o`` written back into ``dict``, in the same form and order, if it changed. */
static int open_store(OpenRuns *o, PyObject *dict) {
    if (!o->changed) return 0;
    o->changed = 0;
    PyDict_Clear(dict);
    for (Py_ssize_t k = 0; k < o->n; k++) {
        OpenRun *r = &o->runs[k];
        PyObject *counts = PyDict_GetItemWithError(dict, r->verb);
        if (counts == NULL) {
            if (PyErr_Occurred()) return -1;
            counts = PyDict_New();
            if (counts == NULL) return -1;
            int failed = PyDict_SetItem(dict, r->verb, counts) < 0;
            Py_DECREF(counts); /* the dict holds it */
            if (failed) return -1;
        }
        PyObject *count = PyLong_FromLong(r->count);
        if (count == NULL) return -1;
        int failed = PyDict_SetItem(counts, r->cls, count) < 0;
        Py_DECREF(count);
        if (failed) return -1;
    }
    return 0;
}

/* One more failure of ``verb`` with the error class ``cls``: the run's length. */
static long open_count_failure(OpenRuns *o, PyObject *verb, PyObject *cls, PyObject *invalid_verb) {
    o->changed = 1;
    for (Py_ssize_t k = 0; k < o->n; k++) {
        OpenRun *r = &o->runs[k];
        if (str_eq(r->verb, verb) && str_eq(r->cls, cls)) return ++r->count;
    }
    return open_push(o, verb, cls, 1, invalid_verb) < 0 ? -1 : 1;
}

/* A tick that did not fail ends the runs of its verb: ``summary._success_ends_runs``, with ``info`` the action's
 * facts (verb key, is a dict, tool, verb). */
static int open_success(OpenRuns *o, PyObject *info) {
    if (!PyTuple_Check(info) || PyTuple_GET_SIZE(info) != 4) {
        PyErr_SetString(PyExc_TypeError, "action facts must be a 4-tuple");
        return -1;
    }
    if (PyTuple_GET_ITEM(info, 1) != Py_True) return 0; /* no verb: nothing succeeded */
    PyObject *tool = PyTuple_GET_ITEM(info, 2), *verb = PyTuple_GET_ITEM(info, 3);
    if (!PyUnicode_Check(tool)) {
        PyErr_SetString(PyExc_TypeError, "a tool name must be a str");
        return -1;
    }
    Py_ssize_t tool_len = PyUnicode_GET_LENGTH(tool);
    int found = 0;
    for (Py_ssize_t k = 0; k < o->n && !found; k++) {
        OpenRun *r = &o->runs[k];
        if (r->invalid) {
            found = 1;
        } else if (r->tool_len == tool_len) {
            int kind = PyUnicode_KIND(tool);
            if (PyUnicode_KIND(r->verb) == kind) {
                found = memcmp(PyUnicode_DATA(r->verb), PyUnicode_DATA(tool), (size_t)tool_len * kind) == 0;
            } else {
                Py_ssize_t match = PyUnicode_Tailmatch(r->verb, tool, 0, tool_len, -1);
                if (match < 0) return -1;
                found = match == 1;
            }
        }
    }
    if (!found || verb == Py_None) return 0;
    if (!PyUnicode_Check(verb)) {
        PyErr_SetString(PyExc_TypeError, "a verb must be a str");
        return -1;
    }
    Py_ssize_t kept = 0;
    for (Py_ssize_t k = 0; k < o->n; k++) {
        OpenRun *r = &o->runs[k];
        if (r->invalid || str_eq(r->verb, verb)) {
            Py_DECREF(r->verb);
            Py_DECREF(r->cls);
            o->changed = 1;
        } else {
            o->runs[kept++] = *r;
        }
    }
    o->n = kept;
    return 0;
}

typedef struct {
    Out out;
    Memo *actions_memo, *flags_memo;
    PyObject *s, *slow, *intern, *state, *runs_type, *tick_cache, *tick_flags, *actions, *action_info;
    PyObject *bad_action, *invalid_verb, *chain_number, *death_outcomes;
    long thrash_min, deadlock_window, cache_max;
    Memo *chains_memo;
    /* A transient summary's chains (``ListNames``' dict and list, the chain lines' first and last, the chains'
     * episodes), numbered here as ``summary_columns.chain_number`` does; with ``chain_names`` None, ``chain_ids`` is
     * a ``NameStore`` (the viewer's summary, a local pass's: ``store_intern``); NULL: ``chain_number`` is asked. */
    PyObject *chain_ids, *chain_names, *chain_first, *chain_last, *chain_episode;
    /* The episode of the last tick, while its state is certainly the one in ``state``: its runs object, the dict of
     * its open runs and its count of ticks without progress, kept here and written back to the runs object before
     * any Python code that may read it runs (``forget_last``). */
    PyObject *last_name; /* bytes, or NULL */
    long last_episode;
    PyObject *last_runs, *last_open;
    long last_no_progress;
    int no_progress_changed;
    /* The last episode's open runs, read out of its dict once (``open_load``) and written back to it only when they
     * changed (``open_store``): each failing tick then counts in this array, not in two dicts of Python objects. */
    OpenRuns open;
    Memo *episodes_memo; /* episode names (bytes) to their numbers */
} Ctx;

static long episode_of(Ctx *c, const Value *ep, PyObject **runs);
static long store_intern(PyObject *store, const char *s, Py_ssize_t n, int *is_new);

static int forget_last(Ctx *c) {
    int r = 0;
    if (c->last_runs != NULL && c->no_progress_changed) {
        PyObject *now = PyLong_FromLong(c->last_no_progress);
        r = now == NULL ? -1 : PyObject_SetAttr(c->last_runs, str_no_progress, now);
        Py_XDECREF(now);
    }
    if (c->last_open != NULL && open_store(&c->open, c->last_open) < 0) r = -1;
    open_clear(&c->open);
    c->no_progress_changed = 0;
    Py_CLEAR(c->last_name);
    Py_CLEAR(c->last_runs);
    Py_CLEAR(c->last_open);
    return r;
}

/* Make the episode named by ep the last one: its number, runs object, open runs and count read once. */
static int load_last(Ctx *c, const Value *ep) {
    if (forget_last(c) < 0) return -1;
    PyObject *runs;
    long episode = episode_of(c, ep, &runs);
    if (episode == -2) return -1;
    c->last_runs = runs;
    c->last_episode = episode;
    c->last_open = PyObject_GetAttr(runs, str_runs);
    if (c->last_open == NULL) return -1;
    if (!PyDict_Check(c->last_open)) {
        PyErr_SetString(PyExc_TypeError, "runs must be a dict");
        return -1;
    }
    if (open_load(&c->open, c->last_open, c->invalid_verb) < 0) return -1;
    PyObject *count = PyObject_GetAttr(runs, str_no_progress);
    if (count == NULL) return -1;
    c->last_no_progress = PyLong_AsLong(count);
    Py_DECREF(count);
    if (c->last_no_progress == -1 && PyErr_Occurred()) return -1;
    c->last_name = PyBytes_FromStringAndSize(ep->s, ep->n);
    return c->last_name == NULL ? -1 : 0;
}

/* A line: its bytes, and the bytes object that holds just them when there is one (NULL: part of a block). */
typedef struct {
    const char *p, *end;
    PyObject *raw;
} Line;

static int run_slow(Ctx *c, Py_ssize_t i, const Line *line) {
    if (forget_last(c) < 0) return -1;
    PyObject *raw = line->raw != NULL ? Py_NewRef(line->raw) : PyBytes_FromStringAndSize(line->p, line->end - line->p);
    if (raw == NULL) return -1;
    PyObject *row = PyObject_CallFunction(c->slow, "nO", i, raw);
    Py_DECREF(raw);
    if (row == NULL) return -1;
    PyObject *seq = PySequence_Fast(row, "slow() must give a sequence");
    Py_DECREF(row);
    if (seq == NULL) return -1;
    if (PySequence_Fast_GET_SIZE(seq) != 7) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_ValueError, "slow() must give 7 values");
        return -1;
    }
    PyObject **items = PySequence_Fast_ITEMS(seq);
    long v[6];
    for (int j = 0; j < 6; j++) v[j] = PyLong_AsLong(items[j]);
    double latency = PyFloat_AsDouble(items[6]);
    Py_DECREF(seq);
    if (PyErr_Occurred()) return -1;
    put_row(&c->out, v[0], v[1], v[2], v[3], v[4], v[5], latency);
    return 0;
}

/* The action's facts (borrowed from the actions cache or a new reference in *owned). */
static PyObject *action_facts(Ctx *c, const Value *action, PyObject **owned) {
    PyObject *key;
    *owned = NULL;
    const char *text = action->tag == V_RAW ? action->s : "";
    Py_ssize_t n = action->tag == V_RAW ? action->n : 0;
    uint64_t h = hash_bytes(text, n);
    PyObject *known = memo_get(c->actions_memo, text, n, h);
    if (known != NULL) return known;
    if (action->tag == V_RAW) {
        key = PyBytes_FromStringAndSize(action->s, action->n);
        if (key == NULL) return NULL;
    } else {
        key = Py_NewRef(empty_bytes);
    }
    PyObject *info = PyDict_GetItemWithError(c->actions, key);
    if (info == NULL) {
        if (PyErr_Occurred()) {
            Py_DECREF(key);
            return NULL;
        }
        info = PyObject_CallOneArg(c->action_info, key);
        *owned = info;
    }
    if (info != NULL) memo_put(c->actions_memo, key, info, h);
    Py_DECREF(key);
    return info;
}

static PyObject *flag_facts(Ctx *c, const Value *vals) {
    char buf[512];
    Py_ssize_t n = flag_key(vals, buf, sizeof(buf));
    PyObject *bkey = NULL;
    uint64_t h = 0;
    if (n >= 0) {
        h = hash_bytes(buf, n);
        PyObject *known = memo_get(c->flags_memo, buf, n, h);
        if (known != NULL) return Py_NewRef(known);
        bkey = PyBytes_FromStringAndSize(buf, n);
        if (bkey == NULL) return NULL;
        PyObject *found = PyDict_GetItemWithError(c->tick_cache, bkey);
        if (found != NULL) {
            memo_put(c->flags_memo, bkey, found, h);
            Py_DECREF(bkey);
            return Py_NewRef(found);
        }
        if (PyErr_Occurred()) {
            Py_DECREF(bkey);
            return NULL;
        }
    }
    PyObject *tuple = PyTuple_New(7);
    if (tuple == NULL) {
        Py_XDECREF(bkey);
        return NULL;
    }
    for (int j = 0; j < 7; j++) {
        PyObject *item = value_object(&vals[FLAG_FIELDS[j]]);
        if (item == NULL) {
            Py_DECREF(tuple);
            Py_XDECREF(bkey);
            return NULL;
        }
        PyTuple_SET_ITEM(tuple, j, item);
    }
    PyObject *facts = PyObject_CallOneArg(c->tick_flags, tuple);
    Py_DECREF(tuple);
    if (facts != NULL && bkey != NULL) {
        if (PyDict_GET_SIZE(c->tick_cache) >= c->cache_max) PyDict_Clear(c->tick_cache);
        if (PyDict_SetItem(c->tick_cache, bkey, facts) < 0) Py_CLEAR(facts);
        if (facts != NULL) memo_put(c->flags_memo, bkey, facts, h);
    }
    Py_XDECREF(bkey);
    return facts;
}

/* The episode number of a name (-2 on an error); with runs, a new reference to its runs (made when it has none). */
static long episode_of(Ctx *c, const Value *ep, PyObject **runs) {
    if (runs != NULL) *runs = NULL;
    uint64_t h = hash_bytes(ep->s, ep->n);
    PyObject *number = memo_get(c->episodes_memo, ep->s, ep->n, h);
    if (number != NULL) {
        Py_INCREF(number);
    } else { /* interned once per name and batch: into a ``NameStore`` here, else asked of ``intern`` */
        if (!PyCallable_Check(c->intern)) {
            int is_new;
            long found = store_intern(c->intern, ep->s, ep->n, &is_new);
            number = found < 0 ? NULL : PyLong_FromLong(found);
        } else {
            PyObject *name = PyUnicode_DecodeUTF8(ep->s, ep->n, "strict");
            number = name == NULL ? NULL : PyObject_CallOneArg(c->intern, name);
            Py_XDECREF(name);
        }
        if (number == NULL) return -2;
        PyObject *key = PyBytes_FromStringAndSize(ep->s, ep->n);
        if (key == NULL) {
            Py_DECREF(number);
            return -2;
        }
        memo_put(c->episodes_memo, key, number, h);
        Py_DECREF(key);
    }
    long episode = PyLong_AsLong(number);
    if (episode == -1 && PyErr_Occurred()) {
        Py_DECREF(number);
        return -2;
    }
    if (runs != NULL) {
        PyObject *found = PyDict_GetItemWithError(c->state, number);
        if (found == NULL) {
            if (PyErr_Occurred()) {
                Py_DECREF(number);
                return -2;
            }
            found = PyObject_CallNoArgs(c->runs_type);
            if (found == NULL || PyDict_SetItem(c->state, number, found) < 0) {
                Py_XDECREF(found);
                Py_DECREF(number);
                return -2;
            }
            *runs = found;
        } else {
            *runs = Py_NewRef(found);
        }
    }
    Py_DECREF(number);
    return episode;
}

/* ``summary_names.NameStore.intern`` of the name whose UTF-8 bytes are the n at s, in C: the store's blob, end
 * offsets, hash tags and table read and extended as its Python code does (the same numbers, and for readers in other
 * threads the same order: bytes, tag, slot, end offset last). *is_new: the name was not there. A name that is not
 * ASCII (its hash tag is its str's hash, which the bytes' is not then), or a store of 4 GB of names, is interned
 * by the store's own ``intern``. -1 on an error. */
static long store_intern(PyObject *store, const char *s, Py_ssize_t n, int *is_new) {
    *is_new = 0;
    int ascii = 1;
    for (Py_ssize_t k = 0; k < n; k++) ascii &= (unsigned char)s[k] < 0x80;
    PyObject *blob = NULL, *ends = NULL, *tags = NULL, *table = NULL;
    Py_buffer ends_view = {0}, tags_view = {0}, table_view = {0};
    long found = -2; /* -2: ask the store's ``intern`` */
    if (ascii) {
        blob = PyObject_GetAttr(store, str_blob);
        ends = blob == NULL ? NULL : PyObject_GetAttr(store, str_ends);
        tags = ends == NULL ? NULL : PyObject_GetAttr(store, str_tags);
        table = tags == NULL ? NULL : PyObject_GetAttr(store, str_table);
        if (table == NULL) goto error;
        if (!PyByteArray_Check(blob)) {
            PyErr_SetString(PyExc_TypeError, "a name store's blob must be a bytearray");
            goto error;
        }
        if (PyObject_GetBuffer(ends, &ends_view, PyBUF_FORMAT) < 0 ||
            PyObject_GetBuffer(tags, &tags_view, PyBUF_FORMAT) < 0 ||
            PyObject_GetBuffer(table, &table_view, PyBUF_FORMAT | PyBUF_WRITABLE) < 0)
            goto error;
        if (ends_view.itemsize == 4 && tags_view.itemsize == 4 && table_view.itemsize == 4 &&
            (table_view.len / 4 & (table_view.len / 4 - 1)) == 0 && table_view.len > 0) {
            const uint32_t *end_at = ends_view.buf, *tag_at = tags_view.buf;
            int32_t *slots = table_view.buf;
            const char *bytes = PyByteArray_AS_STRING(blob);
            Py_ssize_t count = ends_view.len / 4;
            uint32_t tag = (uint32_t)((uint64_t)_Py_HashBytes(s, n) & 0xFFFFFFFFu);
            size_t mask = (size_t)(table_view.len / 4) - 1, slot = tag & mask;
            for (;;) {
                int32_t number = slots[slot];
                if (number < 0) break;
                if (number >= count) { /* (not a table of this store: let its own code say) */
                    slot = SIZE_MAX;
                    break;
                }
                if (tag_at[number] == tag) {
                    uint32_t from = number ? end_at[number - 1] : 0;
                    if ((Py_ssize_t)(end_at[number] - from) == n && memcmp(bytes + from, s, (size_t)n) == 0) {
                        found = number;
                        break;
                    }
                }
                slot = (slot + 1) & mask;
            }
            Py_ssize_t size = PyByteArray_GET_SIZE(blob);
            if (found == -2 && slot != SIZE_MAX && (uint64_t)size + (uint64_t)n <= 0xFFFFFFFFu) {
                /* new: its bytes, tag and slot, then its end offset (readers take ``len`` from those) */
                PyBuffer_Release(&ends_view);
                PyBuffer_Release(&tags_view);
                if (PyByteArray_Resize(blob, size + n) < 0) goto error;
                memcpy(PyByteArray_AS_STRING(blob) + size, s, (size_t)n);
                PyObject *value = PyLong_FromUnsignedLong(tag);
                PyObject *done = value == NULL ? NULL : PyObject_CallMethodOneArg(tags, str_append, value);
                Py_XDECREF(value);
                if (done == NULL) goto error;
                Py_DECREF(done);
                slots[slot] = (int32_t)count;
                value = PyLong_FromSsize_t(size + n);
                done = value == NULL ? NULL : PyObject_CallMethodOneArg(ends, str_append, value);
                Py_XDECREF(value);
                if (done == NULL) goto error;
                Py_DECREF(done);
                found = (long)count;
                *is_new = 1;
                Py_ssize_t slot_count = table_view.len / 4;
                PyBuffer_Release(&table_view);
                if (3 * (Py_ssize_t)found + 3 > 2 * slot_count) {
                    done = PyObject_CallMethodNoArgs(store, str_grow);
                    if (done == NULL) goto error;
                    Py_DECREF(done);
                }
            }
        }
        PyBuffer_Release(&ends_view);
        PyBuffer_Release(&tags_view);
        PyBuffer_Release(&table_view);
        Py_CLEAR(blob);
        Py_CLEAR(ends);
        Py_CLEAR(tags);
        Py_CLEAR(table);
    }
    if (found == -2) { /* the store's own code */
        Py_ssize_t before = PyObject_Size(store);
        if (before < 0) return -1;
        PyObject *name = PyUnicode_DecodeUTF8(s, n, "strict");
        PyObject *number = name == NULL ? NULL : PyObject_CallMethodOneArg(store, str_intern, name);
        Py_XDECREF(name);
        if (number == NULL) return -1;
        found = PyLong_AsLong(number);
        Py_DECREF(number);
        if (found == -1 && PyErr_Occurred()) return -1;
        *is_new = found >= before;
    }
    return found;
error:
    PyBuffer_Release(&ends_view);
    PyBuffer_Release(&tags_view);
    PyBuffer_Release(&table_view);
    Py_XDECREF(blob);
    Py_XDECREF(ends);
    Py_XDECREF(tags);
    Py_XDECREF(table);
    return -1;
}

/* A new chain of the episode ``episode_number``, first seen at ``line``: its first and last line and its episode
 * appended, as ``summary_columns.chain_number`` does. */
static int chain_lines_new(Ctx *c, long episode_number, PyObject *line) {
    PyObject *episode = PyLong_FromLong(episode_number);
    PyObject *done = episode == NULL ? NULL : PyObject_CallMethodOneArg(c->chain_first, str_append, line);
    if (done != NULL) {
        Py_DECREF(done);
        done = PyObject_CallMethodOneArg(c->chain_last, str_append, line);
    }
    if (done != NULL) {
        Py_DECREF(done);
        done = PyObject_CallMethodOneArg(c->chain_episode, str_append, episode);
    }
    Py_XDECREF(done);
    Py_XDECREF(episode);
    return done == NULL ? -1 : 0;
}

/* A new reference to the number of the chain ``chain_id`` of the episode named ``ep`` (NULL: lines without an
 * episode) in a transient summary's chains, numbered as ``summary_columns.chain_number`` numbers them: its key is the
 * episode's name, "\x1f" and the chain's id; a new chain gets the next number and its first line. */
static PyObject *chain_number_here(Ctx *c, long episode_number, const Value *ep, const Value *chain_id, PyObject *line) {
    Py_ssize_t ep_n = ep != NULL ? ep->n : 0;
    char small[264];
    char *buf = ep_n + 1 + chain_id->n <= (Py_ssize_t)sizeof(small) ? small : PyMem_Malloc((size_t)(ep_n + 1 + chain_id->n));
    if (buf == NULL) return PyErr_NoMemory();
    if (ep_n) memcpy(buf, ep->s, (size_t)ep_n);
    buf[ep_n] = '\x1f';
    memcpy(buf + ep_n + 1, chain_id->s, (size_t)chain_id->n);
    if (c->chain_names == Py_None) { /* the chains of a ``NameStore`` */
        int is_new;
        long chain = store_intern(c->chain_ids, buf, ep_n + 1 + chain_id->n, &is_new);
        if (buf != small) PyMem_Free(buf);
        if (chain < 0) return NULL;
        PyObject *number = PyLong_FromLong(chain);
        if (number == NULL) return NULL;
        if (!is_new) {
            if (PyObject_SetItem(c->chain_last, number, line) < 0) Py_CLEAR(number);
            return number;
        }
        if (chain_lines_new(c, episode_number, line) < 0) Py_CLEAR(number);
        return number;
    }
    PyObject *key = PyUnicode_DecodeUTF8(buf, ep_n + 1 + chain_id->n, "strict");
    if (buf != small) PyMem_Free(buf);
    if (key == NULL) return NULL;
    PyObject *number = PyDict_GetItemWithError(c->chain_ids, key);
    if (number != NULL) { /* known from an earlier batch: this is its last line */
        Py_INCREF(number);
        Py_DECREF(key);
        if (PyObject_SetItem(c->chain_last, number, line) < 0) Py_CLEAR(number);
        return number;
    }
    if (PyErr_Occurred()) {
        Py_DECREF(key);
        return NULL;
    }
    number = PyLong_FromSsize_t(PyList_GET_SIZE(c->chain_names));
    int r = number == NULL ? -1 : PyDict_SetItem(c->chain_ids, key, number);
    if (r == 0) r = PyList_Append(c->chain_names, key);
    if (r == 0) r = chain_lines_new(c, episode_number, line);
    Py_DECREF(key);
    if (r < 0) Py_CLEAR(number);
    return number;
}

/* ``summary._chain_number``: asked of Python (or ``chain_number_here``) once per chain and batch, then from the
 * memo. ``ep``: the episode's name (NULL: none). */
static long chain_of(Ctx *c, long episode, const Value *ep, const Value *chain_id, Py_ssize_t i) {
    char buf[264];
    int64_t ep_number = episode;
    int memo = chain_id->n <= 256;
    Py_ssize_t n = (Py_ssize_t)sizeof(ep_number) + chain_id->n;
    uint64_t h = 0;
    PyObject *number = NULL;
    if (memo) {
        memcpy(buf, &ep_number, sizeof(ep_number));
        memcpy(buf + sizeof(ep_number), chain_id->s, (size_t)chain_id->n);
        h = hash_bytes(buf, n);
        number = memo_get(c->chains_memo, buf, n, h);
    }
    if (number != NULL) { /* a known chain: its last line is this one */
        PyObject *lines = c->chain_last != NULL ? NULL : PyObject_GetAttr(c->s, str_chain_lines);
        PyObject *last = c->chain_last != NULL ? Py_NewRef(c->chain_last)
                         : lines == NULL       ? NULL
                                               : PyObject_GetAttr(lines, str_last);
        PyObject *line = last == NULL ? NULL : PyLong_FromSsize_t(i);
        int r = line == NULL ? -1 : PyObject_SetItem(last, number, line);
        Py_XDECREF(line);
        Py_XDECREF(last);
        Py_XDECREF(lines);
        if (r < 0) return -2;
        long chain = PyLong_AsLong(number);
        return chain == -1 && PyErr_Occurred() ? -2 : chain;
    }
    if (c->chain_ids != NULL) {
        PyObject *line = PyLong_FromSsize_t(i);
        if (line == NULL) return -2;
        number = chain_number_here(c, episode, episode == -1 ? NULL : ep, chain_id, line);
        Py_DECREF(line);
    } else {
        PyObject *text = value_object(chain_id);
        if (text == NULL) return -2;
        number = PyObject_CallFunction(c->chain_number, "OlOn", c->s, episode, text, i);
        Py_DECREF(text);
    }
    if (number == NULL) return -2;
    long chain = PyLong_AsLong(number);
    if (chain == -1 && PyErr_Occurred()) {
        Py_DECREF(number);
        return -2;
    }
    if (memo) {
        PyObject *key = PyBytes_FromStringAndSize(buf, n);
        if (key == NULL) {
            Py_DECREF(number);
            return -2;
        }
        memo_put(c->chains_memo, key, number, h);
        Py_DECREF(key);
    }
    Py_DECREF(number);
    return chain;
}

static int do_tick(Ctx *c, Py_ssize_t i, const Line *line, const Value *vals) {
    PyObject *facts = flag_facts(c, vals);
    if (facts == NULL) return -1;
    if (!PyTuple_Check(facts) || PyTuple_GET_SIZE(facts) != 3) {
        Py_DECREF(facts);
        PyErr_SetString(PyExc_TypeError, "tick_flags() must give a 3-tuple");
        return -1;
    }
    long flags = PyLong_AsLong(PyTuple_GET_ITEM(facts, 0));
    PyObject *run_class = PyTuple_GET_ITEM(facts, 1);
    long mark = PyLong_AsLong(PyTuple_GET_ITEM(facts, 2));
    if (PyErr_Occurred()) {
        Py_DECREF(facts);
        return -1;
    }
    PyObject *owned_info;
    PyObject *info = action_facts(c, &vals[F_ACTION], &owned_info);
    if (info == NULL) {
        Py_DECREF(facts);
        return -1;
    }
    if (info == c->bad_action) {
        Py_XDECREF(owned_info);
        Py_DECREF(facts);
        return run_slow(c, i, line);
    }
    Py_INCREF(info);
    Py_XDECREF(owned_info);
    int failed = 0;
    long episode = -1;
    const Value *ep = &vals[F_EPISODE];
    if (ep->tag == V_STR) {
        if (c->last_name == NULL || PyBytes_GET_SIZE(c->last_name) != ep->n ||
            memcmp(PyBytes_AS_STRING(c->last_name), ep->s, (size_t)ep->n) != 0) {
            failed = load_last(c, ep) < 0;
        }
        if (!failed) {
            episode = c->last_episode;
            const Value *progress = &vals[F_PROGRESS];
            if (progress->tag == V_TRUE) {
                c->last_no_progress = 0;
                c->no_progress_changed = 1;
            } else if (progress->tag == V_FALSE) {
                c->last_no_progress++;
                c->no_progress_changed = 1;
                if (c->last_no_progress >= c->deadlock_window) flags |= 1 << 5; /* FLAG_DEADLOCK */
            }
            if (run_class != Py_None) {
                long count = open_count_failure(&c->open, PyTuple_GET_ITEM(info, 0), run_class, c->invalid_verb);
                if (count < 0) {
                    failed = 1;
                } else if (count >= c->thrash_min) {
                    flags |= mark;
                }
            } else if (c->open.n > 0) {
                failed = open_success(&c->open, info) < 0;
            }
        }
    }
    long chain = -1;
    if (!failed && vals[F_CHAIN_ID].tag == V_STR) {
        chain = chain_of(c, episode, ep, &vals[F_CHAIN_ID], i);
        failed = chain == -2;
    }
    Py_DECREF(info);
    Py_DECREF(facts);
    if (failed) return -1;
    long tick = vals[F_TICK].tag == V_INT ? (long)vals[F_TICK].i : -1;
    long context = vals[F_CONTEXT_CHARS].tag == V_INT ? (long)vals[F_CONTEXT_CHARS].i : 0;
    put_row(&c->out, K_TICK, flags, episode, tick, chain, context, latency_value(&vals[F_LATENCY]));
    return 0;
}

static int do_edge(Ctx *c, Py_ssize_t i, const Line *line, const Value *vals, int kind) {
    if (vals[F_ACTION].tag == V_RAW && vals[F_ACTION].n > 0) {
        PyObject *owned;
        PyObject *info = action_facts(c, &vals[F_ACTION], &owned);
        if (info == NULL) return -1;
        int bad = info == c->bad_action;
        Py_XDECREF(owned);
        if (bad) return run_slow(c, i, line);
    }
    if (forget_last(c) < 0) return -1;
    long episode = vals[F_EPISODE].tag == V_STR ? episode_of(c, &vals[F_EPISODE], NULL) : -1;
    if (episode == -2) return -1;
    long flags = 0;
    if (kind == K_END) {
        const Value *outcome = &vals[F_OUTCOME];
        if (outcome->tag == V_STR) {
            PyObject *text = value_object(outcome);
            if (text == NULL) return -1;
            int death = PySequence_Contains(c->death_outcomes, text);
            int failure = PyUnicode_Compare(text, str_failure) == 0 || PyUnicode_Compare(text, str_aborted) == 0;
            Py_DECREF(text);
            if (death < 0) return -1;
            flags = death ? 1 /* FLAG_DEATH */ : (failure ? 1 << 6 /* FLAG_ERROR */ : 0);
        }
        PyObject *key = PyLong_FromLong(episode); /* (-1: the state of lines without an episode, as NO_ID) */
        if (key == NULL) return -1;
        int r = PyDict_Contains(c->state, key);
        if (r > 0) r = PyDict_DelItem(c->state, key);
        Py_DECREF(key);
        if (r < 0) return -1;
    }
    put_row(&c->out, kind, flags, episode, -1, -1, 0, Py_NAN);
    return 0;
}

/* The offsets just past each newline of the n bytes at start, plus base: a bytes object of int64 items (NULL with an
 * error set). The viewer's newline scan (``newline_ends``) and the split of a block into lines (``summarize``). */
static PyObject *newline_offsets(const char *start, Py_ssize_t n, long long base) {
    const char *p = start, *end = start + n;
    Py_ssize_t room = n / 256 + 16, count = 0; /* lines of a few hundred bytes: grown as needed */
    PyObject *out = PyBytes_FromStringAndSize(NULL, room * (Py_ssize_t)sizeof(int64_t));
    while (out != NULL && (p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        if (count == room) {
            room *= 2;
            if (_PyBytes_Resize(&out, room * (Py_ssize_t)sizeof(int64_t)) < 0) break; /* (out is NULL then) */
        }
        ((int64_t *)PyBytes_AS_STRING(out))[count++] = base + (p - start) + 1;
        p++;
    }
    if (out != NULL) _PyBytes_Resize(&out, count * (Py_ssize_t)sizeof(int64_t));
    return out;
}

static const char summarize_doc[] =
    "summarize(lines, first, s, slow, intern, state, runs_type, tick_cache, tick_flags, actions, action_info,\n"
    "          bad_action, invalid_verb, chain_number, death_outcomes, thrash_min, deadlock_window, cache_max, chains)\n"
    "--\n\n"
    "The rows of ``lines`` (a list of bytes, or a block of lines as a bytes-like object; valid UTF-8; line numbers from ``first``) as ``summary._summarize_strict`` gives them, in\n"
    "columns: the bytes of kind ('b'), flags ('H'), episode, tick, chain, context size (all 'i') and latency ('f'),\n"
    "then the least and greatest tick and context size. ``slow(i, raw)`` gives the row of a line not taken here.\n"
    "``intern(name)`` numbers an episode, or ``intern`` is the episodes' ``NameStore``, interned into here.\n"
    "``chains``: None, or a transient summary's (``ListNames``' ids and names, its chain lines' first and last, its\n"
    "chain episodes) or ``(store, None, first, last, episodes)`` for chains in a ``NameStore``, numbered here as\n"
    "``chain_number`` would.";

static PyObject *summarize(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 19) {
        PyErr_SetString(PyExc_TypeError, "summarize() takes 19 arguments");
        return NULL;
    }
    PyObject *chains = args[18];
    if (chains != Py_None &&
        !(PyTuple_Check(chains) && PyTuple_GET_SIZE(chains) == 5 &&
          ((PyDict_Check(PyTuple_GET_ITEM(chains, 0)) && PyList_Check(PyTuple_GET_ITEM(chains, 1))) ||
           PyTuple_GET_ITEM(chains, 1) == Py_None))) {
        PyErr_SetString(PyExc_TypeError,
                        "summarize(): chains must be None or (ids, names, first, last, episodes) or (store, None, ...)");
        return NULL;
    }
    PyObject *lines = args[0];
    Py_ssize_t first = PyLong_AsSsize_t(args[1]);
    if (first == -1 && PyErr_Occurred()) return NULL;
    int block_mode = !PyList_Check(lines);
    if (!PyDict_Check(args[5]) || !PyDict_Check(args[7]) || !PyDict_Check(args[9])) {
        PyErr_SetString(PyExc_TypeError, "summarize(): state and caches must be dicts");
        return NULL;
    }
    if (!PyUnicode_Check(args[12])) {
        PyErr_SetString(PyExc_TypeError, "summarize(): invalid_verb must be a str");
        return NULL;
    }
    Ctx c = {
        .s = args[2], .slow = args[3], .intern = args[4], .state = args[5], .runs_type = args[6],
        .tick_cache = args[7], .tick_flags = args[8], .actions = args[9], .action_info = args[10],
        .bad_action = args[11], .invalid_verb = args[12], .chain_number = args[13],
        .death_outcomes = args[14], .last_name = NULL, .last_runs = NULL, .last_open = NULL, .last_episode = -1,
    };
    if (chains != Py_None) {
        c.chain_ids = PyTuple_GET_ITEM(chains, 0);
        c.chain_names = PyTuple_GET_ITEM(chains, 1);
        c.chain_first = PyTuple_GET_ITEM(chains, 2);
        c.chain_last = PyTuple_GET_ITEM(chains, 3);
        c.chain_episode = PyTuple_GET_ITEM(chains, 4);
    }
    c.thrash_min = PyLong_AsLong(args[15]);
    c.deadlock_window = PyLong_AsLong(args[16]);
    c.cache_max = PyLong_AsLong(args[17]);
    if (PyErr_Occurred()) return NULL;
    Py_ssize_t count;
    Py_buffer view = {0};
    PyObject *ends_obj = NULL; /* a block's newlines (offsets just past them): found once, read by the loop below */
    const int64_t *ends = NULL;
    if (block_mode) { /* the lines of a block (any bytes-like object), as bytes.split(b"\n") gives them */
        if (PyObject_GetBuffer(lines, &view, PyBUF_SIMPLE) < 0) return NULL;
        ends_obj = newline_offsets(view.buf, view.len, 0);
        if (ends_obj == NULL) {
            PyBuffer_Release(&view);
            return NULL;
        }
        ends = (const int64_t *)PyBytes_AS_STRING(ends_obj);
        count = PyBytes_GET_SIZE(ends_obj) / (Py_ssize_t)sizeof(int64_t) + 1;
    } else {
        count = PyList_GET_SIZE(lines);
    }
    Memo *memos = PyMem_Calloc(4, sizeof(Memo));
    if (memos == NULL) {
        if (block_mode) PyBuffer_Release(&view);
        Py_XDECREF(ends_obj);
        return PyErr_NoMemory();
    }
    c.actions_memo = &memos[0];
    c.flags_memo = &memos[1];
    c.chains_memo = &memos[2];
    c.episodes_memo = &memos[3];
    PyObject *cols[7] = {
        PyBytes_FromStringAndSize(NULL, count), PyBytes_FromStringAndSize(NULL, count * 2),
        PyBytes_FromStringAndSize(NULL, count * 4), PyBytes_FromStringAndSize(NULL, count * 4),
        PyBytes_FromStringAndSize(NULL, count * 4), PyBytes_FromStringAndSize(NULL, count * 4),
        PyBytes_FromStringAndSize(NULL, count * 4),
    };
    int failed = 0;
    for (int j = 0; j < 7; j++) failed |= cols[j] == NULL;
    if (!failed) {
        c.out = (Out){
            .kind = (int8_t *)PyBytes_AS_STRING(cols[0]), .flags = (uint16_t *)PyBytes_AS_STRING(cols[1]),
            .episode = (int32_t *)PyBytes_AS_STRING(cols[2]), .tick = (int32_t *)PyBytes_AS_STRING(cols[3]),
            .chain = (int32_t *)PyBytes_AS_STRING(cols[4]), .context = (int32_t *)PyBytes_AS_STRING(cols[5]),
            .latency = (float *)PyBytes_AS_STRING(cols[6]), .n = 0,
            .tick_min = LONG_MAX, .tick_max = LONG_MIN, .context_min = LONG_MAX, .context_max = LONG_MIN,
        };
    }
    Value vals[N_FIELDS];
    KeyShape shape[SHAPE_KEYS];
    memset(shape, 0, sizeof(shape));
    const char *block = block_mode ? view.buf : NULL;
    const char *block_end = block_mode ? block + view.len : NULL;
    for (Py_ssize_t j = 0; j < count && !failed; j++) {
        Line line;
        if (block_mode) {
            const char *start = j ? block + ends[j - 1] : block;
            line = (Line){start, j + 1 < count ? block + ends[j] - 1 : block_end, NULL};
        } else {
            line.raw = PyList_GET_ITEM(lines, j);
            if (!PyBytes_Check(line.raw)) {
                PyErr_SetString(PyExc_TypeError, "lines must be bytes");
                failed = 1;
                break;
            }
            line.p = PyBytes_AS_STRING(line.raw);
            line.end = line.p + PyBytes_GET_SIZE(line.raw);
        }
        Py_ssize_t i = first + j;
        if (parse_line(line.p, line.end, vals, shape) != OK) {
            failed = run_slow(&c, i, &line) < 0;
            continue;
        }
        const Value *kind = &vals[F_KIND];
        int k = K_UNKNOWN;
        if (kind->tag == V_STR) {
            if (kind->n == 4 && memcmp(kind->s, "tick", 4) == 0) k = K_TICK;
            else if (kind->n == 13 && memcmp(kind->s, "episode_start", 13) == 0) k = K_START;
            else if (kind->n == 11 && memcmp(kind->s, "episode_end", 11) == 0) k = K_END;
        }
        if (k == K_UNKNOWN) {
            failed = run_slow(&c, i, &line) < 0;
        } else if (k == K_TICK) {
            failed = do_tick(&c, i, &line, vals) < 0;
        } else {
            failed = do_edge(&c, i, &line, vals, k) < 0;
        }
    }
    if (forget_last(&c) < 0) failed = 1;
    PyMem_Free(c.open.runs);
    for (int j = 0; j < 4; j++) memo_clear(&memos[j]);
    PyMem_Free(memos);
    Py_XDECREF(ends_obj);
    if (block_mode) PyBuffer_Release(&view);
    if (!failed && c.out.n != count) { /* every way through the loop gives its line one row */
        PyErr_Format(PyExc_SystemError, "summarize(): %zd rows for %zd lines", c.out.n, count);
        failed = 1;
    }
    if (failed) {
        for (int j = 0; j < 7; j++) Py_XDECREF(cols[j]);
        return NULL;
    }
    if (count == 0) c.out.tick_min = c.out.tick_max = c.out.context_min = c.out.context_max = 0;
    return Py_BuildValue("(NNNNNNNllll)", cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], cols[6],
                         c.out.tick_min, c.out.tick_max, c.out.context_min, c.out.context_max);
}

static const char narrow_doc[] =
    "narrow(data, typecode)\n--\n\n"
    "The 'i' items of ``data`` as bytes of ``typecode`` ('h' or 'H'; every value must fit).";

static PyObject *narrow(PyObject *module, PyObject *args) {
    (void)module;
    Py_buffer in;
    int code;
    if (!PyArg_ParseTuple(args, "y*C", &in, &code)) return NULL;
    if ((code != 'h' && code != 'H') || in.len % 4 != 0) {
        PyBuffer_Release(&in);
        PyErr_SetString(PyExc_ValueError, "narrow(): typecode 'h' or 'H' and whole 'i' items");
        return NULL;
    }
    Py_ssize_t n = in.len / 4;
    PyObject *out = PyBytes_FromStringAndSize(NULL, n * 2);
    if (out != NULL) {
        const int32_t *src = (const int32_t *)in.buf;
        if (code == 'h') {
            int16_t *dst = (int16_t *)PyBytes_AS_STRING(out);
            for (Py_ssize_t j = 0; j < n; j++) dst[j] = (int16_t)src[j];
        } else {
            uint16_t *dst = (uint16_t *)PyBytes_AS_STRING(out);
            for (Py_ssize_t j = 0; j < n; j++) dst[j] = (uint16_t)src[j];
        }
    }
    PyBuffer_Release(&in);
    return out;
}

static const char all_ascii_doc[] =
    "all_ascii(lines)\n--\n\nTrue when every bytes object in the list ``lines`` (or ``lines`` itself, bytes-like) is ASCII\n"
    "(so valid UTF-8).";

static int is_ascii(const char *p, Py_ssize_t n) {
#ifdef __SSE2__
    __m128i high = _mm_setzero_si128();
    for (; n >= 16; p += 16, n -= 16) high = _mm_or_si128(high, _mm_loadu_si128((const __m128i *)p));
    if (_mm_movemask_epi8(high)) return 0;
#endif
    uint64_t any = 0;
    while (n >= 8) {
        uint64_t x;
        memcpy(&x, p, 8);
        any |= x;
        p += 8;
        n -= 8;
    }
    while (n-- > 0) any |= (unsigned char)*p++;
    return !(any & 0x8080808080808080ULL);
}

static PyObject *all_ascii(PyObject *module, PyObject *lines) {
    (void)module;
    if (!PyList_Check(lines)) { /* one bytes-like object */
        Py_buffer view;
        if (PyObject_GetBuffer(lines, &view, PyBUF_SIMPLE) < 0) return NULL;
        int ascii = is_ascii(view.buf, view.len);
        PyBuffer_Release(&view);
        return PyBool_FromLong(ascii);
    }
    Py_ssize_t count = PyList_GET_SIZE(lines);
    for (Py_ssize_t j = 0; j < count; j++) {
        PyObject *raw = PyList_GET_ITEM(lines, j);
        if (!PyBytes_Check(raw)) {
            PyErr_SetString(PyExc_TypeError, "all_ascii(): a list of bytes");
            return NULL;
        }
        if (!is_ascii(PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw))) Py_RETURN_FALSE;
    }
    Py_RETURN_TRUE;
}

static const char newline_ends_doc[] =
    "newline_ends(data, base)\n--\n\n"
    "The offsets just past each newline of ``data`` (a bytes-like object read at offset ``base``), as int64 bytes.";

static PyObject *newline_ends(PyObject *module, PyObject *args) {
    (void)module;
    Py_buffer in;
    long long base;
    if (!PyArg_ParseTuple(args, "y*L", &in, &base)) return NULL;
    PyObject *out = newline_offsets(in.buf, in.len, base);
    PyBuffer_Release(&in);
    return out;
}

static const char place_names_doc[] =
    "place_names(table, tags, first)\n--\n\n"
    "``summary_names._place``: names ``first, first + 1, ...`` (their hash tags, the ``'I'`` items of ``tags``) put in\n"
    "the free slots (-1) of ``table`` (``'i'`` items, a power of two of them) by linear probing. ValueError, with the\n"
    "table unchanged, when it has too few free slots.";

static int buffer_of(PyObject *obj, Py_buffer *view, int flags, const char *format, const char *what) {
    if (PyObject_GetBuffer(obj, view, flags | PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0) return -1;
    if (view->itemsize != (format[0] == 'q' ? 8 : 4) || view->format == NULL || strcmp(view->format, format) != 0) {
        PyBuffer_Release(view);
        PyErr_Format(PyExc_TypeError, "%s must hold '%s' items", what, format);
        return -1;
    }
    return 0;
}

static PyObject *place_names(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *table_obj, *tags_obj;
    long long first;
    if (!PyArg_ParseTuple(args, "OOL", &table_obj, &tags_obj, &first)) return NULL;
    Py_buffer table, tags;
    if (buffer_of(table_obj, &table, PyBUF_WRITABLE, "i", "place_names(): the table") < 0) return NULL;
    if (buffer_of(tags_obj, &tags, PyBUF_SIMPLE, "I", "place_names(): the tags") < 0) {
        PyBuffer_Release(&table);
        return NULL;
    }
    int32_t *slots = table.buf;
    const uint32_t *tag = tags.buf;
    Py_ssize_t size = table.len / 4, count = tags.len / 4;
    const char *problem = NULL;
    uint32_t *placed = NULL; /* the slot of each name placed, to take them out again when one finds no slot */
    if (size == 0 || (size & (size - 1)) != 0) problem = "place_names(): the table's size must be a power of two";
    else if (first < 0 || first + count - 1 > INT32_MAX) problem = "place_names(): name numbers out of range";
    else if ((placed = PyMem_Malloc((size_t)count * sizeof(uint32_t) + 1)) == NULL) problem = "";
    if (problem == NULL) {
        /* (no count of the free slots first: that walked the whole table, ~0.2 ms a call for the few hundred names
         * of a worker's answer once the table had grown to a 1 GB trace's) */
        uint32_t mask = (uint32_t)(size - 1);
        for (Py_ssize_t k = 0; k < count && problem == NULL; k++) {
            uint32_t slot = tag[k] & mask;
            for (Py_ssize_t probes = 1; slots[slot] >= 0; probes++) {
                if (probes == size) { /* every slot taken */
                    for (Py_ssize_t j = 0; j < k; j++) slots[placed[j]] = -1;
                    problem = "place_names(): the table has too few free slots";
                    break;
                }
                slot = (slot + 1) & mask;
            }
            if (problem == NULL) {
                slots[slot] = (int32_t)(first + k);
                placed[k] = slot;
            }
        }
    }
    PyMem_Free(placed);
    PyBuffer_Release(&tags);
    PyBuffer_Release(&table);
    if (problem != NULL) {
        if (*problem == '\0') return PyErr_NoMemory();
        PyErr_SetString(PyExc_ValueError, problem);
        return NULL;
    }
    Py_RETURN_NONE;
}

/* ---- a worker's delta taken in by the viewer (``index_workers.apply_delta``): one pass per column, not numpy's
 * several per flag ---- */

/* The width of a typecode's items for line numbers: 'i' 4, 'q' 8, else 0 (a TypeError is set). */
static int line_width(int code) {
    if (code == 'i') return 4;
    if (code == 'q') return 8;
    PyErr_SetString(PyExc_TypeError, "line numbers are 'i' or 'q' items");
    return 0;
}

static inline void put_line(char *out, Py_ssize_t k, long long line, int width) {
    if (width == 4) {
        int32_t v = (int32_t)line;
        memcpy(out + 4 * k, &v, 4);
    } else {
        int64_t v = (int64_t)line;
        memcpy(out + 8 * k, &v, 8);
    }
}

/* A bytes object of the first ``n`` items of ``out`` (given back shrunk; NULL with an error on failure). */
static PyObject *shrunk(PyObject *out, Py_ssize_t size) {
    if (out != NULL && _PyBytes_Resize(&out, size) < 0) return NULL;
    return out;
}

static int line_in_range(long long line, int width) {
    if (width == 8 || line <= INT32_MAX) return 1;
    PyErr_SetString(PyExc_OverflowError, "a line number beyond 'i' items");
    return 0;
}

/* ``(lines, values)``: the first ``k`` items of each (``width`` and 4 bytes an item), or NULL with an error (``k``
 * negative: an error set already); both references are taken. */
static PyObject *lines_and_values(PyObject *lines, PyObject *values, Py_ssize_t k, int width) {
    if (values == NULL || k < 0) {
        Py_XDECREF(lines);
        Py_XDECREF(values);
        return NULL;
    }
    lines = shrunk(lines, k * width);
    values = shrunk(values, k * 4);
    if (lines == NULL || values == NULL) {
        Py_XDECREF(lines);
        Py_XDECREF(values);
        return NULL;
    }
    return Py_BuildValue("(NN)", lines, values);
}

static const char sparse_rows_doc[] =
    "sparse_rows(values, base, code)\n--\n\n"
    "``summary_sparse.SparseColumn.frombytes``: of ``values`` (``'i'`` items, one per line from ``base``) the lines\n"
    "whose value is not NO_ID (-1), as ``code`` items, and their values (``'i'``).";

/* The lines of ``in`` (``'i'`` items, one per line from ``base``) picked, as ``width``-byte items, with their values:
 * with ``runs``, each line whose value differs from the line before (``prev`` the value before the first, if
 * ``has_prev``); else each line whose value is not NO_ID. Releases ``in``. */
static PyObject *pick_lines(Py_buffer *in, long long base, int width, int runs, int has_prev, long long prev) {
    Py_ssize_t n = in->len / 4;
    PyObject *lines = width ? PyBytes_FromStringAndSize(NULL, n * width) : NULL;
    PyObject *values = lines != NULL ? PyBytes_FromStringAndSize(NULL, n * 4) : NULL;
    Py_ssize_t k = 0;
    if (values != NULL) {
        const char *data = in->buf;
        char *out_lines = PyBytes_AS_STRING(lines), *out_values = PyBytes_AS_STRING(values);
        for (Py_ssize_t j = 0; j < n; j++) {
            int32_t v;
            memcpy(&v, data + 4 * j, 4);
            if (runs ? has_prev && v == prev : v == -1) continue;
            if (!line_in_range(base + j, width)) {
                k = -1;
                break;
            }
            put_line(out_lines, k, base + j, width);
            memcpy(out_values + 4 * k, &v, 4);
            k++;
            has_prev = 1;
            prev = v;
        }
    }
    PyBuffer_Release(in);
    return lines_and_values(lines, values, k, width);
}

static PyObject *sparse_rows(PyObject *module, PyObject *args) {
    (void)module;
    Py_buffer in;
    long long base;
    int code;
    if (!PyArg_ParseTuple(args, "y*LC", &in, &base, &code)) return NULL;
    return pick_lines(&in, base, line_width(code), 0, 0, 0);
}

static const char value_runs_doc[] =
    "value_runs(values, base, previous, code)\n--\n\n"
    "``summary_runs.RunColumn.frombytes``: of ``values`` (``'i'`` items, one per line from ``base``) the lines where\n"
    "a run of one value starts, as ``code`` items, and the runs' values (``'i'``); the first line starts one unless\n"
    "its value is ``previous`` (the value of the line before; None: none).";

static PyObject *value_runs(PyObject *module, PyObject *args) {
    (void)module;
    Py_buffer in;
    long long base;
    PyObject *previous;
    int code;
    if (!PyArg_ParseTuple(args, "y*LOC", &in, &base, &previous, &code)) return NULL;
    int width = line_width(code);
    long long prev = 0;
    if (width && previous != Py_None) {
        prev = PyLong_AsLongLong(previous);
        if (prev == -1 && PyErr_Occurred()) width = 0;
    }
    return pick_lines(&in, base, width, 1, previous != Py_None, prev);
}

static const char flag_rows_doc[] =
    "flag_rows(flags, base, masks, code)\n--\n\n"
    "``index_workers.apply_delta``'s filter lines: for each of ``masks`` (a tuple of ints), the lines from ``base``\n"
    "whose flags (``'H'`` items) have any of its bits, as ``code`` items; a tuple of bytes, one per mask.";

#define MAX_MASKS 16
static PyObject *flag_rows(PyObject *module, PyObject *args) {
    (void)module;
    Py_buffer in;
    long long base;
    PyObject *masks;
    int code;
    if (!PyArg_ParseTuple(args, "y*LO!C", &in, &base, &PyTuple_Type, &masks, &code)) return NULL;
    int width = line_width(code);
    Py_ssize_t m = PyTuple_GET_SIZE(masks), n = in.len / 2;
    if (width && m > MAX_MASKS) {
        PyErr_SetString(PyExc_ValueError, "flag_rows(): too many masks");
        width = 0;
    }
    unsigned long mask[MAX_MASKS];
    for (Py_ssize_t q = 0; width && q < m; q++) {
        mask[q] = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(masks, q));
        if (mask[q] == (unsigned long)-1 && PyErr_Occurred()) width = 0;
    }
    PyObject *out[MAX_MASKS] = {NULL};
    Py_ssize_t k[MAX_MASKS] = {0};
    int failed = !width;
    unsigned long any = 0;
    for (Py_ssize_t q = 0; !failed && q < m; q++) {
        any |= mask[q];
        out[q] = PyBytes_FromStringAndSize(NULL, n * width);
        failed = out[q] == NULL;
    }
    const char *data = in.buf;
    for (Py_ssize_t j = 0; !failed && j < n; j++) {
        uint16_t f;
        memcpy(&f, data + 2 * j, 2);
        if (!(f & any)) continue; /* most lines have no filter flag */
        if (!line_in_range(base + j, width)) {
            failed = 1;
            break;
        }
        for (Py_ssize_t q = 0; q < m; q++) {
            if (f & mask[q]) put_line(PyBytes_AS_STRING(out[q]), k[q]++, base + j, width);
        }
    }
    PyBuffer_Release(&in);
    PyObject *result = failed ? NULL : PyTuple_New(m);
    for (Py_ssize_t q = 0; q < m; q++) {
        PyObject *rows = result != NULL ? shrunk(out[q], k[q] * width) : (Py_XDECREF(out[q]), NULL);
        if (result == NULL) continue;
        if (rows == NULL) {
            Py_CLEAR(result);
            for (Py_ssize_t r = q + 1; r < m; r++) Py_XDECREF(out[r]);
            break;
        }
        PyTuple_SET_ITEM(result, q, rows);
    }
    return result;
}

static const char chain_spans_doc[] =
    "chain_spans(chains, base, first, last)\n--\n\n"
    "``summary_columns._ChainLines.add_spans`` for a delta's chain column (``'i'`` items, one per line from ``base``,\n"
    "NO_ID for none): for each line of a chain ``c``, ``first[c]`` is set to it if still negative and ``last[c]`` to\n"
    "it (``first`` and ``last`` writable ``'q'`` arrays holding every chain). IndexError for a chain beyond them.";

static PyObject *chain_spans(PyObject *module, PyObject *args) {
    (void)module;
    Py_buffer in, first, last;
    long long base;
    PyObject *first_obj, *last_obj;
    if (!PyArg_ParseTuple(args, "y*LOO", &in, &base, &first_obj, &last_obj)) return NULL;
    if (buffer_of(first_obj, &first, PyBUF_WRITABLE | PyBUF_FORMAT, "q", "chain_spans(): first") < 0) {
        PyBuffer_Release(&in);
        return NULL;
    }
    if (buffer_of(last_obj, &last, PyBUF_WRITABLE | PyBUF_FORMAT, "q", "chain_spans(): last") < 0) {
        PyBuffer_Release(&first);
        PyBuffer_Release(&in);
        return NULL;
    }
    Py_ssize_t n = in.len / 4, chains = first.len / 8;
    int64_t *f = first.buf, *l = last.buf;
    const char *data = in.buf;
    int failed = last.len / 8 < chains;
    if (failed) PyErr_SetString(PyExc_ValueError, "chain_spans(): first and last differ in length");
    for (Py_ssize_t j = 0; !failed && j < n; j++) {
        int32_t c;
        memcpy(&c, data + 4 * j, 4);
        if (c == -1) continue;
        if (c < 0 || c >= chains) {
            PyErr_Format(PyExc_IndexError, "chain_spans(): chain %d of %zd", (int)c, chains);
            failed = 1;
            break;
        }
        if (f[c] < 0) f[c] = base + j;
        l[c] = base + j;
    }
    PyBuffer_Release(&last);
    PyBuffer_Release(&first);
    PyBuffer_Release(&in);
    if (failed) return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"newline_ends", newline_ends, METH_VARARGS, newline_ends_doc},
    {"place_names", place_names, METH_VARARGS, place_names_doc},
    {"all_ascii", all_ascii, METH_O, all_ascii_doc},
    {"summarize", (PyCFunction)(void (*)(void))summarize, METH_FASTCALL, summarize_doc},
    {"narrow", narrow, METH_VARARGS, narrow_doc},
    {"sparse_rows", sparse_rows, METH_VARARGS, sparse_rows_doc},
    {"value_runs", value_runs, METH_VARARGS, value_runs_doc},
    {"flag_rows", flag_rows, METH_VARARGS, flag_rows_doc},
    {"chain_spans", chain_spans, METH_VARARGS, chain_spans_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_summary_native", "The summary's hot loop in C (see summary._summarize_strict).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__summary_native(void) {
    int filled[MAX_NAME] = {0};
    for (int k = 0; k < N_FIELDS; k++) {
        FIELD_LEN[k] = (Py_ssize_t)strlen(FIELDS[k].name);
        if (FIELD_LEN[k] >= MAX_NAME) return PyErr_Format(PyExc_SystemError, "field name too long");
        char padded[16] = {0};
        memcpy(padded, FIELDS[k].name, (size_t)FIELD_LEN[k]);
        words16_of(&NAME_WORDS[k], padded, FIELD_LEN[k]);
    }
    for (int n = 0; n < MAX_NAME; n++) {
        for (int k = 0; k < N_FIELDS; k++)
            if (FIELD_LEN[k] == n) BY_LEN[n][filled[n]++] = (int8_t)k;
        BY_LEN[n][filled[n]] = -1;
    }
    str_runs = PyUnicode_InternFromString("runs");
    str_no_progress = PyUnicode_InternFromString("no_progress");
    str_chain_lines = PyUnicode_InternFromString("chain_lines");
    str_last = PyUnicode_InternFromString("last");
    str_append = PyUnicode_InternFromString("append");
    str_failure = PyUnicode_InternFromString("failure");
    str_aborted = PyUnicode_InternFromString("aborted");
    str_blob = PyUnicode_InternFromString("_blob");
    str_ends = PyUnicode_InternFromString("_ends");
    str_tags = PyUnicode_InternFromString("_tags");
    str_table = PyUnicode_InternFromString("_table");
    str_grow = PyUnicode_InternFromString("_grow");
    str_intern = PyUnicode_InternFromString("intern");
    empty_bytes = PyBytes_FromStringAndSize("", 0);
    if (!str_runs || !str_no_progress || !str_chain_lines || !str_last || !str_failure || !str_aborted || !empty_bytes ||
        !str_append || !str_blob || !str_ends || !str_tags || !str_table || !str_grow || !str_intern)
        return NULL;
    PyObject *module = PyModule_Create(&module_def);
    /* The interface's version: ``summary_native.API``; a build of another version is not used (see ``load``). */
    if (module != NULL && PyModule_AddIntConstant(module, "API", 3) < 0) Py_CLEAR(module);
    return module;
}

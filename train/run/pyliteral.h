/* pyliteral.h: the Python literal subset that facetrain config files use.
 *
 * Config files look like arcface_torch's configs/<name>.py (`config.lr = 0.1`). Their values are
 * Python literals: int, float, str ('...' or "..."), True/False/None, tuples and lists of
 * those, and the arithmetic those configs use (`config.num_epoch // 10`, `30 * 10000`). This
 * module evaluates such an expression into an ft_pyval, and prints a value exactly as
 * Python's str() would, so training.log matches arcface_torch's `str(value)` lines (floats in
 * Python's shortest round-trip repr: 5e-4 -> 0.0005, 1e-5 -> 1e-05; tuples "(1.0, 0.5, 0.0)";
 * lists "['lfw', 'cfp_fp']").
 */
#ifndef FT_RUN_PYLITERAL_H
#define FT_RUN_PYLITERAL_H

#include <stddef.h>
#include <stdint.h>

typedef enum ft_pykind {
    FT_PY_NONE,
    FT_PY_BOOL,
    FT_PY_INT,
    FT_PY_FLOAT,
    FT_PY_STR,
    FT_PY_TUPLE,
    FT_PY_LIST
} ft_pykind;

typedef struct ft_pyval {
    ft_pykind kind;
    int64_t i;              /* BOOL (0/1), INT */
    double f;               /* FLOAT */
    char *s;                /* STR (NUL-terminated, owned) */
    struct ft_pyval *items; /* TUPLE, LIST (owned) */
    int n;                  /* number of items */
} ft_pyval;

/* Evaluate `text`, one Python expression of the subset arcface_torch's configs use (surrounding
 * blanks allowed): literals; unary + and -; + - * / // % ** on int, float and bool with Python's
 * semantics (/ gives a float, // floors, % takes the divisor's sign, int ** int >= 0 stays an
 * int; int64 overflow is an error); + on two str, two tuples or two lists; parentheses; and
 * config.<key>, the value lookup gives for key (0 and *v set, or non-zero when the key is not
 * set; lookup NULL: no references). Returns 0, or FT_EFORMAT with a reason in err. On error
 * *out is left as None. */
typedef int (*ft_py_lookup_fn)(void *ctx, const char *key, const ft_pyval **v);
int ft_pyval_eval(const char *text, ft_py_lookup_fn lookup, void *ctx, ft_pyval *out, char *err,
                  size_t errcap);
/* ft_pyval_eval without references. */
int ft_pyval_parse(const char *text, ft_pyval *out, char *err, size_t errcap);
void ft_pyval_free(ft_pyval *v); /* frees contents, leaves None */
int ft_pyval_copy(ft_pyval *dst, const ft_pyval *src);
ft_pyval ft_pyval_int(int64_t i);
ft_pyval ft_pyval_float(double f);
int ft_pyval_set_str(ft_pyval *v, const char *s); /* replaces v with a str; 0 or -ENOMEM */

/* Python str(v) / repr(v) into out (always NUL-terminated; truncated if cap is short).
 * Returns the length the full text needs, like snprintf. */
size_t ft_pyval_str(const ft_pyval *v, char *out, size_t cap);
size_t ft_pyval_repr(const ft_pyval *v, char *out, size_t cap);
/* Python repr(float): shortest text that reads back to the same double. */
void ft_py_float_repr(double v, char *out, size_t cap);
/* Python type name for messages: "int", "float", "str", "bool", "NoneType", "tuple", "list". */
const char *ft_pykind_name(ft_pykind k);

#endif

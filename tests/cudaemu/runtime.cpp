/* runtime.cpp: the emulator's CUDA runtime (the part of cuda_runtime_api.h facetrain uses),
 * its streams and events, and the kernel engine.
 *
 * Device. FT_CUDA_EMU=1 makes FT_CUDA_EMU_DEVICES (default 1) devices visible, filtered by
 * CUDA_VISIBLE_DEVICES as the driver does; without it the runtime reports no driver, as on a
 * machine without a GPU. FT_CUDA_EMU_MEM (bytes, K/M/G suffix; default 8G) is each device's
 * memory: cudaMalloc beyond it fails with cudaErrorMemoryAllocation and cudaMemGetInfo counts
 * it down. FT_CUDA_EMU_DRIVER (e.g. 12040) emulates an older driver: cudaGetDeviceCount then
 * says cudaErrorInsufficientDriver.
 *
 * Memory. Device and pinned allocations are host memory the runtime tracks by address range.
 * New device memory is filled with 0xff bytes (NaN in fp32, fp16 and bf16), as memory that
 * was never written holds garbage on a GPU. Every copy and memset checks that its device side
 * lies inside one live allocation and its host side outside all of them (a direction that does
 * not match its pointers is cudaErrorInvalidValue), and under ASan the allocations carry its
 * redzones, so a kernel that reads past a buffer is reported there, as compute-sanitizer would.
 *
 * Streams. Each stream is a queue; its work runs when the host waits for it (stream or event
 * synchronization, a blocking copy, cudaFree, cudaFreeHost, a download into pageable memory)
 * or, one item per call, when it is queried. A copy from pinned memory reads the host buffer
 * when it runs, not when it was queued, and a copy into pinned memory lands only then, so code
 * that reuses or reads a pinned buffer without waiting sees what it would see on a GPU: stale
 * or future data. Pageable copies behave as CUDA documents: the source is taken at the call,
 * a download into pageable memory returns when it has landed. cudaStreamWaitEvent makes the
 * waiting stream run the recorded stream up to the event first. The legacy default stream
 * runs its work at once, after every blocking stream has drained.
 *
 * Graphs. cudaStreamBeginCapture makes a stream record what is queued on it instead of
 * queueing it; cudaStreamEndCapture hands the recording over as a graph, and each
 * cudaGraphLaunch of its instantiation queues copies of the recorded work (kernels with their
 * arguments as they were at capture, copies reading their sources when they run). As CUDA
 * does, a capture is invalidated (cudaStreamEndCapture then fails with
 * cudaErrorStreamCaptureInvalidated) by what cannot be recorded: a synchronization, an
 * allocation or a free (from the capturing thread; from any thread in the global mode), work
 * on the legacy default stream, a copy with pageable host memory, a wait for an event
 * recorded outside the capture, a query of a capturing stream. Other streams join a capture as
 * CUDA's fork and join do: an event recorded on a capturing stream and waited for by another
 * stream makes that stream capture too (its work goes into the same recording); each such
 * stream's work must be joined back (an event recorded on it after its last work, waited for
 * by the stream the capture began on) before cudaStreamEndCapture, else that fails with
 * cudaErrorStreamCaptureUnjoined. The recording is the work in the order the host queued it,
 * one valid order of CUDA's graph. Collectives are recorded too: each launch runs a fresh
 * instance of the recorded collective. An event recorded in a capture cannot be waited for
 * after the capture has ended. FT_CUDA_EMU_STATS counts a launch as "cudaGraphLaunch" and its
 * work as "graph:<name>".
 *
 * Kernels. A grid runs block by block. The first block of a kernel runs with a fiber per
 * thread (its own stack; __syncthreads switches to the next fiber, and a block whose threads
 * do not all reach the same barrier is reported); a kernel whose first block reached no
 * barrier runs its other blocks, and later launches, thread after thread without fibers.
 * Launch configurations are checked as a launch checks them (threads per block 1..1024,
 * grid dimensions), errors go to cudaGetLastError.
 */
#include <sys/mman.h>
#include <unistd.h>
#include <xmmintrin.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "emu.h"

extern "C" {
#include "ft_common.h" /* ft_now */
}

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define EMU_ASAN 1
#else
#define EMU_ASAN 0
#endif

/* the built-in variables: plain globals, as kernels run only under the runtime's lock (one
 * host thread at a time) */
extern "C" {
uint3 threadIdx;
uint3 blockIdx;
dim3 blockDim;
dim3 gridDim;
int warpSize = 32;
}

namespace emu {

void diag(const char *api, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "cuda emu: %s: %s\n", api, msg);
}

[[noreturn]] static void fatal(const char *api, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "cuda emu: %s: %s\n", api, msg);
    abort();
}

/* ---- configuration from the environment ---- */

static size_t parse_bytes(const char *s, size_t dflt) {
    if (!s || !*s) return dflt;
    char *end;
    double v = strtod(s, &end);
    if (end == s || v < 0) return dflt;
    switch (*end) {
    case 'k':
    case 'K':
        v *= 1024.0;
        break;
    case 'm':
    case 'M':
        v *= 1048576.0;
        break;
    case 'g':
    case 'G':
        v *= 1073741824.0;
        break;
    default:
        break;
    }
    return (size_t)v;
}

struct config {
    bool init = false;
    bool visible = false;
    int driver = 0;  /* cudaDriverGetVersion */
    int devices = 0; /* visible after CUDA_VISIBLE_DEVICES */
    size_t mem = 0;  /* per device */
    int phys[64];    /* visible ordinal -> physical device (its PCI bus id) */
    int cc = 90;     /* compute capability, major * 10 + minor (FT_CUDA_EMU_CC) */
};
static config g_cfg;

/* FT_CUDA_EMU_STATS=path: at exit, "count name" per API call kind and per kind of queued work
 * (kernel names, library calls), for tests that count what a training step does */
static std::map<std::string, uint64_t> &g_stats = *new std::map<std::string, uint64_t>;
static std::recursive_mutex g_mu;
typedef std::lock_guard<std::recursive_mutex> lock;

static void count(const char *what) {
    static int on = -1;
    lock l(g_mu);
    if (on < 0) on = getenv("FT_CUDA_EMU_STATS") != nullptr;
    if (on) g_stats[what]++;
}
static void write_stats() {
    const char *p = getenv("FT_CUDA_EMU_STATS");
    if (!p || !*p) return;
    FILE *f = fopen(p, "w");
    if (!f) return;
    for (const auto &kv : g_stats)
        fprintf(f, "%llu %s\n", (unsigned long long)kv.second, kv.first.c_str());
    fclose(f);
}

static const config &cfg() {
    if (g_cfg.init) return g_cfg;
    g_cfg.init = true;
    if (getenv("FT_CUDA_EMU_STATS")) atexit(write_stats);
    const char *on = getenv("FT_CUDA_EMU");
    g_cfg.visible = on && strcmp(on, "1") == 0;
    if (!g_cfg.visible) return g_cfg;
    const char *drv = getenv("FT_CUDA_EMU_DRIVER");
    g_cfg.driver = drv && *drv ? atoi(drv) : CUDART_VERSION;
    const char *nd = getenv("FT_CUDA_EMU_DEVICES");
    int physical = nd && *nd ? atoi(nd) : 1;
    if (physical < 0) physical = 0;
    if (physical > 64) physical = 64;
    g_cfg.devices = physical;
    for (int i = 0; i < physical; i++) g_cfg.phys[i] = i;
    const char *cc = getenv("FT_CUDA_EMU_CC");
    if (cc && *cc) g_cfg.cc = atoi(cc);
    const char *cvd = getenv("CUDA_VISIBLE_DEVICES");
    if (cvd) { /* the listed ordinals up to the first invalid one, as the driver reads it */
        int n = 0;
        std::string s(cvd);
        size_t pos = 0;
        while (pos <= s.size()) {
            size_t comma = s.find(',', pos);
            std::string tok =
                s.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
            char *end;
            long v = strtol(tok.c_str(), &end, 10);
            if (tok.empty() || *end || v < 0 || v >= physical) break;
            g_cfg.phys[n++] = (int)v;
            if (comma == std::string::npos) break;
            pos = comma + 1;
        }
        g_cfg.devices = n;
    }
    g_cfg.mem = parse_bytes(getenv("FT_CUDA_EMU_MEM"), (size_t)8 << 30);
    return g_cfg;
}

bool device_visible() {
    return cfg().visible && cfg().devices > 0 && cfg().driver >= CUDART_VERSION;
}

/* ---- state ---- */

enum { DEVICE = 1, PINNED = 2 };
struct alloc_info {
    size_t size;
    int kind;
};
/* the tables are never destroyed: what a program leaves allocated at exit stays reachable, as
 * a GPU context does not count as a leak */
static std::map<uintptr_t, alloc_info> &g_allocs = *new std::map<uintptr_t, alloc_info>;
static size_t g_dev_used;
static thread_local cudaError_t g_last = cudaSuccess;
static int g_device; /* cudaSetDevice */

static cudaError_t ret(cudaError_t e) {
    if (e != cudaSuccess) g_last = e;
    return e;
}

static const alloc_info *find(const void *p, uintptr_t *base) {
    uintptr_t a = (uintptr_t)p;
    auto it = g_allocs.upper_bound(a);
    if (it == g_allocs.begin()) return nullptr;
    --it;
    if (a >= it->first + (it->second.size ? it->second.size : 1)) return nullptr;
    if (base) *base = it->first;
    return &it->second;
}

bool is_device(const void *p) {
    lock l(g_mu);
    const alloc_info *a = find(p, nullptr);
    return a && a->kind == DEVICE;
}

static bool is_pinned(const void *p) {
    const alloc_info *a = find(p, nullptr);
    return a && a->kind == PINNED;
}

bool check_device(const void *p, size_t bytes, const char *api, const char *what, bool null_ok) {
    lock l(g_mu);
    if (!p) {
        if (null_ok) return true;
        diag(api, "%s is NULL", what);
        return false;
    }
    uintptr_t base;
    const alloc_info *a = find(p, &base);
    if (!a || a->kind != DEVICE) {
        diag(api, "%s %p is not device memory", what, p);
        return false;
    }
    uintptr_t off = (uintptr_t)p - base;
    if (bytes > a->size - off) {
        diag(api, "%s: %zu bytes at offset %zu overrun its allocation of %zu bytes", what, bytes,
             (size_t)off, a->size);
        return false;
    }
    return true;
}

/* ---- streams and events ---- */

struct op {
    const char *what;
    std::function<void()> fn;
    std::function<bool()> step; /* enqueue_poll's, when fn is empty */
    /* a recorded enqueue_poll: makes each launch's step */
    std::function<std::function<bool()>()> make;
};
struct stream_st {
    std::deque<op> q;
    uint64_t enq = 0, done = 0;
    unsigned flags = 0;
    bool live = true;
};
struct event_st {
    stream_st *s = nullptr;
    uint64_t seq = 0;
    unsigned flags = 0;
    /* recorded inside capture number cap_epoch (0: not), on stream cs after cn of its
     * recorded items */
    uint64_t cap_epoch = 0;
    stream_st *cs = nullptr;
    uint64_t cn = 0;
};
static std::vector<stream_st *> &g_streams =
    *new std::vector<stream_st *>; /* every stream ever made (destroyed ones drained) */
static std::vector<event_st *> &g_events = *new std::vector<event_st *>;

/* a stream taking part in the capture: the one it began on (first) and those that joined */
struct cap_member {
    stream_st *s;
    uint64_t n = 0;           /* items recorded from it */
    uint64_t joined_upto = 0; /* of those, the ones the origin stream has waited for */
};
/* the one capture in progress (the emulator records one at a time) */
struct capture_st {
    stream_st *s = nullptr;
    cudaStreamCaptureMode mode = cudaStreamCaptureModeGlobal;
    std::thread::id owner;
    bool invalid = false;
    std::vector<op> ops;
    std::vector<cap_member> members;
    uint64_t epoch = 0;
};
static capture_st &g_cap = *new capture_st; /* never destroyed, as the tables above */
static uint64_t g_cap_epochs;               /* captures begun so far */

/* s's part in the capture in progress, or null */
static cap_member *cap_of(stream_st *s) {
    if (!g_cap.s) return nullptr;
    for (cap_member &m : g_cap.members)
        if (m.s == s) return &m;
    return nullptr;
}
struct graph_st {
    std::vector<op> ops;
};
struct graph_exec_st {
    std::vector<op> ops;
};

/* the capture ends invalid: one line saying why (the first reason only) */
static void invalidate(const char *api, const char *why) {
    if (!g_cap.invalid)
        fprintf(stderr, "cuda emu: %s: %s during a stream capture: the capture is invalidated\n",
                api, why);
    g_cap.invalid = true;
}
/* an unsafe call (synchronization, allocation) while a capture is in progress and the
 * capture's mode forbids it from this thread: true after invalidating the capture */
static bool capture_forbids(const char *api) {
    if (!g_cap.s || g_cap.mode == cudaStreamCaptureModeRelaxed) return false;
    if (g_cap.mode == cudaStreamCaptureModeThreadLocal && g_cap.owner != std::this_thread::get_id())
        return false;
    invalidate(api, "a call that is not permitted");
    return true;
}

static stream_st *S(cudaStream_t s) {
    return (stream_st *)s;
}
static bool is_default(cudaStream_t s) {
    return s == nullptr || s == cudaStreamLegacy || s == cudaStreamPerThread;
}
static bool stream_ok(cudaStream_t s) {
    if (is_default(s)) return true;
    for (stream_st *x : g_streams)
        if (x == S(s)) return x->live;
    return false;
}
static bool event_ok(cudaEvent_t e) {
    for (event_st *x : g_events)
        if (x == (event_st *)e) return true;
    return false;
}

double hang_seconds() {
    static double hang = -1;
    if (hang < 0) {
        const char *h = getenv("FT_CUDA_EMU_HANG_S");
        hang = h && *h ? atof(h) : 900.0;
    }
    return hang;
}

/* call a step until it is done; blocking: wait for it, else one call */
static bool run_step(const op &o, bool blocking) {
    if (o.step()) return true;
    if (!blocking) return false;
    double hang = hang_seconds(), t0 = ft_now();
    while (!o.step()) {
        if (ft_now() - t0 > hang)
            fatal(o.what, "waited %.0f s for it to complete (FT_CUDA_EMU_HANG_S): a hang", hang);
        usleep(200);
    }
    return true;
}

/* run s's work up to position target; blocking: wait for steps, else stop at one not done */
static bool run_until(stream_st *s, uint64_t target, bool blocking = true) {
    while (s->done < target && !s->q.empty()) {
        if (!s->q.front().fn) {
            if (!run_step(s->q.front(), blocking)) return false;
            s->q.pop_front();
            s->done++;
            continue;
        }
        op o = std::move(s->q.front());
        s->q.pop_front();
        o.fn();
        s->done++;
    }
    return true;
}
static void drain(stream_st *s) {
    run_until(s, s->enq);
}
void drain_all() {
    lock l(g_mu);
    for (size_t i = 0; i < g_streams.size(); i++) drain(g_streams[i]);
}

/* the legacy default stream's work runs at once, after every blocking stream has drained */
static void drain_blocking() {
    for (stream_st *x : g_streams)
        if (!(x->flags & cudaStreamNonBlocking)) drain(x);
}

void enqueue(cudaStream_t s, const char *what, std::function<void()> fn) {
    lock l(g_mu);
    if (cap_member *m = is_default(s) ? nullptr : cap_of(S(s))) {
        /* recorded, not run; counted when a launch queues it */
        g_cap.ops.push_back(op{what, std::move(fn), nullptr, nullptr});
        m->n++;
        return;
    }
    if (g_cap.s && is_default(s) && g_cap.mode != cudaStreamCaptureModeRelaxed)
        invalidate(what, "work on the legacy default stream");
    count(what);
    if (is_default(s)) {
        drain_blocking();
        fn();
        return;
    }
    stream_st *st = S(s);
    st->q.push_back(op{what, std::move(fn), nullptr, nullptr});
    st->enq++;
}

void enqueue_poll(cudaStream_t s, const char *what, std::function<std::function<bool()>()> make) {
    lock l(g_mu);
    if (cap_member *m = is_default(s) ? nullptr : cap_of(S(s))) {
        g_cap.ops.push_back(op{what, nullptr, nullptr, std::move(make)});
        m->n++;
        return;
    }
    count(what);
    if (is_default(s)) {
        drain_blocking();
        run_step(op{what, nullptr, make(), nullptr}, true);
        return;
    }
    stream_st *st = S(s);
    st->q.push_back(op{what, nullptr, make(), nullptr});
    st->enq++;
}

/* ---- fibers (x86-64 System V): a context is the stack pointer of a suspended switch ---- */

extern "C" void emu_switch(void **save, void *to);
extern "C" void emu_fiber_start(void);
extern "C" void **emu_fiber_main(void);
__asm__(".text\n"
        ".globl emu_switch\n"
        ".type emu_switch,@function\n"
        "emu_switch:\n"
        "  pushq %rbp\n"
        "  pushq %rbx\n"
        "  pushq %r12\n"
        "  pushq %r13\n"
        "  pushq %r14\n"
        "  pushq %r15\n"
        "  subq $8, %rsp\n"
        "  stmxcsr (%rsp)\n"
        "  fnstcw 4(%rsp)\n"
        "  movq %rsp, (%rdi)\n"
        "  movq %rsi, %rsp\n"
        "  ldmxcsr (%rsp)\n"
        "  fldcw 4(%rsp)\n"
        "  addq $8, %rsp\n"
        "  popq %r15\n"
        "  popq %r14\n"
        "  popq %r13\n"
        "  popq %r12\n"
        "  popq %rbx\n"
        "  popq %rbp\n"
        "  ret\n"
        ".size emu_switch, .-emu_switch\n"
        /* a new fiber's first switch returns here: run the thread, then switch away for good
         * (emu_fiber_main returns {where to save this dead context, the scheduler's}) */
        ".globl emu_fiber_start\n"
        ".type emu_fiber_start,@function\n"
        "emu_fiber_start:\n"
        "  call emu_fiber_main\n"
        "  movq 8(%rax), %rsi\n"
        "  movq (%rax), %rdi\n"
        "  call emu_switch\n"
        "  ud2\n"
        ".size emu_fiber_start, .-emu_fiber_start\n");

enum { RUN, AT_BARRIER, DONE };
struct fiber {
    void *sp = nullptr;
    int state = DONE;
    uint3 tid;
#if EMU_ASAN
    void *fake = nullptr;
#endif
};

#if EMU_ASAN
static const size_t STACK = (size_t)512 << 10;
#else
static const size_t STACK = (size_t)128 << 10;
#endif
static const size_t PAGE = 4096;
static const int MAX_THREADS = 1024;

struct engine {
    char *stacks = nullptr; /* MAX_THREADS stacks, a guard page below each */
    fiber f[MAX_THREADS];
    int cur = -1;             /* fiber running, -1: the scheduler; -2: a thread without fiber */
    void *sched_sp = nullptr; /* the scheduler's context while a fiber runs */
    void *dead_sp = nullptr;
    void *final_switch[2];
    const std::function<void()> *body = nullptr;
    const char *kernel = nullptr;
    int barriers = 0; /* barriers reached in the current block */
#if EMU_ASAN
    const void *sched_bottom = nullptr;
    size_t sched_size = 0;
    void *sched_fake = nullptr;
#endif
};
static engine g_eng;

static char *stack_lo(int t) {
    return g_eng.stacks + (size_t)t * (STACK + PAGE) + PAGE;
}

static void make_stacks() {
    if (g_eng.stacks) return;
    size_t total = (size_t)MAX_THREADS * (STACK + PAGE);
    void *p = mmap(nullptr, total, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) fatal("kernel", "cannot map fiber stacks: %s", strerror(errno));
    g_eng.stacks = (char *)p;
    for (int t = 0; t < MAX_THREADS; t++)
        mprotect(g_eng.stacks + (size_t)t * (STACK + PAGE), PAGE, PROT_NONE);
}

static void fiber_init(int t) {
    char *top = stack_lo(t) + STACK;
    top = (char *)((uintptr_t)top & ~(uintptr_t)15);
    void **sp = (void **)(top - 80);
    memset(sp, 0, 80);
    uint32_t csr = _mm_getcsr();
    uint16_t cw;
    __asm__ volatile("fnstcw %0" : "=m"(cw));
    memcpy((char *)sp, &csr, 4);
    memcpy((char *)sp + 4, &cw, 2);
    sp[7] = (void *)emu_fiber_start; /* after 8 bytes of csr/cw and six registers */
    g_eng.f[t].sp = sp;
    g_eng.f[t].state = RUN;
}

static void to_fiber(int t) {
    fiber &f = g_eng.f[t];
    threadIdx = f.tid;
    g_eng.cur = t;
#if EMU_ASAN
    __sanitizer_start_switch_fiber(&g_eng.sched_fake, stack_lo(t), STACK);
#endif
    emu_switch(&g_eng.sched_sp, f.sp);
#if EMU_ASAN
    __sanitizer_finish_switch_fiber(g_eng.sched_fake, nullptr, nullptr);
#endif
    g_eng.cur = -1;
}

extern "C" void **emu_fiber_main(void) {
    int t = g_eng.cur;
#if EMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &g_eng.sched_bottom, &g_eng.sched_size);
#endif
    (*g_eng.body)();
    g_eng.f[t].state = DONE;
    g_eng.final_switch[0] = &g_eng.dead_sp;
    g_eng.final_switch[1] = g_eng.sched_sp;
#if EMU_ASAN
    __sanitizer_start_switch_fiber(nullptr, g_eng.sched_bottom, g_eng.sched_size);
#endif
    return g_eng.final_switch;
}

static uint3 tid_of(int t, dim3 b) {
    uint3 r;
    r.x = (unsigned)t % b.x;
    r.y = (unsigned)t / b.x % b.y;
    r.z = (unsigned)t / (b.x * b.y);
    return r;
}

/* one block: fibers when the kernel may reach a barrier, else thread after thread */
static void run_block(const char *name, bool direct, dim3 b, const std::function<void()> &body,
                      bool *reached_barrier) {
    int n = (int)(b.x * b.y * b.z);
    g_eng.body = &body;
    g_eng.kernel = name;
    g_eng.barriers = 0;
    if (direct) {
        g_eng.cur = -2;
        for (int t = 0; t < n; t++) {
            threadIdx = tid_of(t, b);
            body();
        }
        g_eng.cur = -1;
        *reached_barrier = false;
        return;
    }
    make_stacks();
    for (int t = 0; t < n; t++) {
        g_eng.f[t].tid = tid_of(t, b);
        fiber_init(t);
    }
    int live = n;
    while (live > 0) {
        for (int t = 0; t < n; t++)
            if (g_eng.f[t].state == RUN) to_fiber(t);
        int at = 0, done = 0;
        for (int t = 0; t < n; t++) {
            if (g_eng.f[t].state == AT_BARRIER) at++;
            if (g_eng.f[t].state == DONE) done++;
        }
        if (at && done)
            fatal("kernel",
                  "%s: block (%u,%u,%u): %d threads wait at __syncthreads while %d "
                  "have returned (a barrier not reached by the whole block)",
                  name, blockIdx.x, blockIdx.y, blockIdx.z, at, done);
        for (int t = 0; t < n; t++)
            if (g_eng.f[t].state == AT_BARRIER) g_eng.f[t].state = RUN;
        live = at;
    }
    *reached_barrier = g_eng.barriers > 0;
}

static std::map<const void *, bool> &g_barrier_free = *new std::map<const void *, bool>;

static void run_grid(const char *name, const void *key, dim3 g, dim3 b,
                     const std::function<void()> &body) {
    gridDim = g;
    blockDim = b;
    auto it = g_barrier_free.find(key);
    bool known = it != g_barrier_free.end();
    bool direct = known && it->second;
    for (unsigned z = 0; z < g.z; z++)
        for (unsigned y = 0; y < g.y; y++)
            for (unsigned x = 0; x < g.x; x++) {
                blockIdx.x = x, blockIdx.y = y, blockIdx.z = z;
                bool bar = false;
                run_block(name, direct, b, body, &bar);
                if (!known) {
                    g_barrier_free[key] = !bar;
                    known = true;
                    direct = !bar;
                }
            }
}

void launch(const char *name, const void *key, dim3 g, dim3 b, cudaStream_t s,
            std::function<void()> body) {
    lock l(g_mu);
    unsigned long long threads = (unsigned long long)b.x * b.y * b.z;
    if (threads < 1 || threads > 1024 || b.x > 1024 || b.y > 1024 || b.z > 64 || g.x < 1 ||
        g.y < 1 || g.z < 1 || g.x > 2147483647u || g.y > 65535 || g.z > 65535) {
        diag("launch", "%s: grid (%u,%u,%u) x block (%u,%u,%u) is not a valid configuration", name,
             g.x, g.y, g.z, b.x, b.y, b.z);
        g_last = cudaErrorInvalidConfiguration;
        return;
    }
    if (!device_visible()) {
        g_last = cudaErrorNoDevice;
        return;
    }
    if (!stream_ok(s)) {
        diag("launch", "%s: stream %p is not a live stream", name, (void *)s);
        g_last = cudaErrorInvalidResourceHandle;
        return;
    }
    enqueue(s, name, [name, key, g, b, body]() { run_grid(name, key, g, b, body); });
}

/* ---- fp16 / bf16 ---- */

float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 31, m = h & 1023, bits;
    if (e == 0) {
        if (!m) {
            bits = sign;
        } else { /* subnormal: m * 2^-24 exactly */
            float f = (float)m * 5.9604644775390625e-8f;
            memcpy(&bits, &f, 4);
            bits |= sign;
        }
    } else if (e == 31) {
        bits = sign | 0x7f800000u | (m << 13);
    } else {
        bits = sign | ((e + 112) << 23) | (m << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t float_to_half(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return (uint16_t)(sign | 0x7e00 | ((ax >> 13) & 0x3ff)); /* NaN */
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); /* rounds to >= 65520: inf */
    if (ax < 0x38800000u) { /* below 2^-14: subnormal half, round to nearest even */
        float a;
        memcpy(&a, &ax, 4);
        double q = (double)a / 5.9604644775390625e-8; /* units of 2^-24 */
        double r = __builtin_nearbyint(q);            /* current mode: to nearest even */
        return (uint16_t)(sign | (uint16_t)r);
    }
    uint32_t e = (ax >> 23) - 112, m = ax & 0x7fffff;
    uint32_t h = (e << 10) | (m >> 13), rest = m & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

float bf16_to_float(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t float_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40); /* quiet NaN */
    uint32_t lsb = (x >> 16) & 1;
    return (uint16_t)((x + 0x7fffu + lsb) >> 16);
}

} // namespace emu

using namespace emu;

/* ---- the kernel side ---- */

void __syncthreads(void) {
    if (g_eng.cur == -2)
        fatal("kernel",
              "%s reached __syncthreads in a block run without fibers (its first "
              "block reached none): a barrier that depends on the block",
              g_eng.kernel);
    if (g_eng.cur < 0) fatal("kernel", "__syncthreads outside a kernel");
    int t = g_eng.cur;
    fiber &f = g_eng.f[t];
    f.state = AT_BARRIER;
    g_eng.barriers++;
#if EMU_ASAN
    __sanitizer_start_switch_fiber(&f.fake, g_eng.sched_bottom, g_eng.sched_size);
#endif
    emu_switch(&f.sp, g_eng.sched_sp);
#if EMU_ASAN
    __sanitizer_finish_switch_fiber(f.fake, &g_eng.sched_bottom, &g_eng.sched_size);
#endif
}

/* ---- device management ---- */

extern "C" {

cudaError_t cudaDriverGetVersion(int *v) {
    if (!v) return ret(cudaErrorInvalidValue);
    *v = cfg().visible ? cfg().driver : 0;
    return cudaSuccess;
}
cudaError_t cudaRuntimeGetVersion(int *v) {
    if (!v) return ret(cudaErrorInvalidValue);
    *v = CUDART_VERSION;
    return cudaSuccess;
}
cudaError_t cudaGetDeviceCount(int *count) {
    if (!count) return ret(cudaErrorInvalidValue);
    *count = 0;
    if (!cfg().visible) return ret(cudaErrorNoDevice);
    if (cfg().driver < CUDART_VERSION) return ret(cudaErrorInsufficientDriver);
    if (!cfg().devices) return ret(cudaErrorNoDevice);
    *count = cfg().devices;
    return cudaSuccess;
}
cudaError_t cudaSetDevice(int dev) {
    if (!device_visible()) return ret(cudaErrorNoDevice);
    if (dev < 0 || dev >= cfg().devices) return ret(cudaErrorInvalidDevice);
    g_device = dev;
    return cudaSuccess;
}
cudaError_t cudaGetDevice(int *dev) {
    if (!dev) return ret(cudaErrorInvalidValue);
    if (!device_visible()) return ret(cudaErrorNoDevice);
    *dev = g_device;
    return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int *value, enum cudaDeviceAttr attr, int dev) {
    if (!value) return ret(cudaErrorInvalidValue);
    if (!device_visible()) return ret(cudaErrorNoDevice);
    if (dev < 0 || dev >= cfg().devices) return ret(cudaErrorInvalidDevice);
    switch (attr) {
    case cudaDevAttrComputeCapabilityMajor:
        *value = cfg().cc / 10;
        return cudaSuccess;
    case cudaDevAttrComputeCapabilityMinor:
        *value = cfg().cc % 10;
        return cudaSuccess;
    case cudaDevAttrMultiProcessorCount:
        *value = 132;
        return cudaSuccess;
    default:
        diag("cudaDeviceGetAttribute", "attribute %d is not emulated", (int)attr);
        return ret(cudaErrorInvalidValue);
    }
}
cudaError_t cudaDeviceGetPCIBusId(char *bus, int len, int dev) {
    if (!bus || len < 13) return ret(cudaErrorInvalidValue);
    if (!device_visible()) return ret(cudaErrorNoDevice);
    if (dev < 0 || dev >= cfg().devices) return ret(cudaErrorInvalidDevice);
    /* the physical device's, so that CUDA_VISIBLE_DEVICES=1 is another GPU than =0 */
    snprintf(bus, (size_t)len, "0000:%02X:00.0", 0x18 + cfg().phys[dev]);
    return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize(void) {
    count("cudaDeviceSynchronize");
    if (!device_visible()) return ret(cudaErrorNoDevice);
    if (capture_forbids("cudaDeviceSynchronize")) return ret(cudaErrorStreamCaptureUnsupported);
    drain_all();
    return cudaSuccess;
}
cudaError_t cudaGetLastError(void) {
    cudaError_t e = g_last;
    g_last = cudaSuccess;
    return e;
}
cudaError_t cudaPeekAtLastError(void) {
    return g_last;
}

static const struct {
    cudaError_t e;
    const char *name, *text;
} ERRS[] = {
    {cudaSuccess, "cudaSuccess", "no error"},
    {cudaErrorInvalidValue, "cudaErrorInvalidValue", "invalid argument"},
    {cudaErrorMemoryAllocation, "cudaErrorMemoryAllocation", "out of memory"},
    {cudaErrorInitializationError, "cudaErrorInitializationError", "initialization error"},
    {cudaErrorInvalidConfiguration, "cudaErrorInvalidConfiguration",
     "invalid configuration argument"},
    {cudaErrorInvalidDevice, "cudaErrorInvalidDevice", "invalid device ordinal"},
    {cudaErrorInvalidResourceHandle, "cudaErrorInvalidResourceHandle", "invalid resource handle"},
    {cudaErrorNotReady, "cudaErrorNotReady", "device not ready"},
    {cudaErrorNoDevice, "cudaErrorNoDevice", "no CUDA-capable device is detected"},
    {cudaErrorInsufficientDriver, "cudaErrorInsufficientDriver",
     "CUDA driver version is insufficient for CUDA runtime version"},
    {cudaErrorInvalidDevicePointer, "cudaErrorInvalidDevicePointer", "invalid device pointer"},
    {cudaErrorInvalidMemcpyDirection, "cudaErrorInvalidMemcpyDirection",
     "invalid copy direction for memcpy"},
    {cudaErrorStreamCaptureUnsupported, "cudaErrorStreamCaptureUnsupported",
     "operation not permitted when stream is capturing"},
    {cudaErrorStreamCaptureInvalidated, "cudaErrorStreamCaptureInvalidated",
     "operation failed due to a previous error during capture"},
    {cudaErrorStreamCaptureIsolation, "cudaErrorStreamCaptureIsolation",
     "dependency created on uncaptured work in another stream"},
    {cudaErrorStreamCaptureUnjoined, "cudaErrorStreamCaptureUnjoined",
     "capture was not joined back into the origin stream"},
    {cudaErrorStreamCaptureImplicit, "cudaErrorStreamCaptureImplicit",
     "operation would make the legacy stream depend on a capturing blocking stream"},
    {cudaErrorIllegalState, "cudaErrorIllegalState",
     "the operation cannot be performed in the present state"},
};
const char *cudaGetErrorString(cudaError_t e) {
    for (const auto &x : ERRS)
        if (x.e == e) return x.text;
    return "unrecognized error code";
}
const char *cudaGetErrorName(cudaError_t e) {
    for (const auto &x : ERRS)
        if (x.e == e) return x.name;
    return "cudaErrorUnknown";
}

/* ---- memory ---- */

cudaError_t cudaMalloc(void **p, size_t bytes) {
    count("cudaMalloc");
    if (!p) return ret(cudaErrorInvalidValue);
    *p = nullptr;
    if (!device_visible()) return ret(cudaErrorNoDevice);
    if (!bytes) return cudaSuccess;
    lock l(g_mu);
    if (capture_forbids("cudaMalloc")) return ret(cudaErrorStreamCaptureUnsupported);
    if (bytes > cfg().mem - g_dev_used) return ret(cudaErrorMemoryAllocation);
    void *m = nullptr;
    if (posix_memalign(&m, 256, bytes)) return ret(cudaErrorMemoryAllocation);
    memset(m, 0xff, bytes);
    g_allocs[(uintptr_t)m] = alloc_info{bytes, DEVICE};
    g_dev_used += bytes;
    *p = m;
    return cudaSuccess;
}
cudaError_t cudaFree(void *p) {
    count("cudaFree");
    if (!p) return cudaSuccess;
    lock l(g_mu);
    if (capture_forbids("cudaFree")) return ret(cudaErrorStreamCaptureUnsupported);
    drain_all(); /* cudaFree waits for the device */
    auto it = g_allocs.find((uintptr_t)p);
    if (it == g_allocs.end() || it->second.kind != DEVICE) {
        diag("cudaFree", "%p is not the start of a device allocation", p);
        return ret(cudaErrorInvalidValue);
    }
    g_dev_used -= it->second.size;
    g_allocs.erase(it);
    free(p);
    return cudaSuccess;
}
cudaError_t cudaHostAlloc(void **p, size_t bytes, unsigned int flags) {
    count("cudaHostAlloc");
    if (!p) return ret(cudaErrorInvalidValue);
    *p = nullptr;
    if (!device_visible()) return ret(cudaErrorNoDevice);
    lock l(g_mu);
    if (capture_forbids("cudaHostAlloc")) return ret(cudaErrorStreamCaptureUnsupported);
    void *m = nullptr;
    if (posix_memalign(&m, 4096, bytes ? bytes : 1)) return ret(cudaErrorMemoryAllocation);
    memset(m, 0xff, bytes);
    g_allocs[(uintptr_t)m] = alloc_info{bytes ? bytes : 1, PINNED};
    *p = m;
    return cudaSuccess;
}
cudaError_t cudaMallocHost(void **p, size_t bytes) {
    return cudaHostAlloc(p, bytes, cudaHostAllocDefault);
}
cudaError_t cudaFreeHost(void *p) {
    count("cudaFreeHost");
    if (!p) return cudaSuccess;
    lock l(g_mu);
    if (capture_forbids("cudaFreeHost")) return ret(cudaErrorStreamCaptureUnsupported);
    drain_all();
    auto it = g_allocs.find((uintptr_t)p);
    if (it == g_allocs.end() || it->second.kind != PINNED) {
        diag("cudaFreeHost", "%p is not the start of a pinned allocation", p);
        return ret(cudaErrorInvalidValue);
    }
    g_allocs.erase(it);
    free(p);
    return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total) {
    if (!device_visible()) return ret(cudaErrorNoDevice);
    lock l(g_mu);
    if (free_b) *free_b = cfg().mem - g_dev_used;
    if (total) *total = cfg().mem;
    return cudaSuccess;
}

/* a copy's two sides against its direction; false (and a diagnostic) when they disagree */
static bool copy_sides(void *dst, const void *src, size_t n, cudaMemcpyKind *kind,
                       const char *api) {
    if (*kind == cudaMemcpyDefault)
        *kind = is_device(src)
                    ? (is_device(dst) ? cudaMemcpyDeviceToDevice : cudaMemcpyDeviceToHost)
                    : (is_device(dst) ? cudaMemcpyHostToDevice : cudaMemcpyHostToHost);
    bool dd = *kind == cudaMemcpyHostToDevice || *kind == cudaMemcpyDeviceToDevice;
    bool sd = *kind == cudaMemcpyDeviceToHost || *kind == cudaMemcpyDeviceToDevice;
    if (dd ? !check_device(dst, n, api, "destination") : is_device(dst)) {
        if (!dd) diag(api, "destination %p is device memory but the direction says host", dst);
        return false;
    }
    if (sd ? !check_device(src, n, api, "source") : is_device(src)) {
        if (!sd) diag(api, "source %p is device memory but the direction says host", src);
        return false;
    }
    return true;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind kind,
                            cudaStream_t s) {
    if (!device_visible()) return ret(cudaErrorNoDevice);
    if (!n) return cudaSuccess;
    lock l(g_mu);
    if (!stream_ok(s)) return ret(cudaErrorInvalidResourceHandle);
    if (kind < cudaMemcpyHostToHost || kind > cudaMemcpyDefault)
        return ret(cudaErrorInvalidMemcpyDirection);
    if (!copy_sides(dst, src, n, &kind, "cudaMemcpyAsync")) return ret(cudaErrorInvalidValue);
    if (g_cap.s && S(s) == g_cap.s &&
        ((kind == cudaMemcpyHostToDevice && !is_pinned(src)) ||
         (kind == cudaMemcpyDeviceToHost && !is_pinned(dst)))) {
        invalidate("cudaMemcpyAsync", "a copy with pageable host memory");
        return ret(cudaErrorStreamCaptureUnsupported);
    }
    if (kind == cudaMemcpyHostToDevice && !is_pinned(src)) {
        /* pageable source: staged at the call */
        auto staged = std::make_shared<std::vector<char>>((const char *)src, (const char *)src + n);
        enqueue(s, "cudaMemcpyAsync(H2D, pageable)",
                [dst, staged, n]() { memcpy(dst, staged->data(), n); });
        return cudaSuccess;
    }
    enqueue(s, "cudaMemcpyAsync", [dst, src, n]() { memcpy(dst, src, n); });
    if (kind == cudaMemcpyDeviceToHost && !is_pinned(dst) && !is_default(s))
        drain(S(s)); /* into pageable memory: returns when it has landed */
    return cudaSuccess;
}
cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind kind) {
    count("cudaMemcpy");
    if (!device_visible()) return ret(cudaErrorNoDevice);
    if (!n) return cudaSuccess;
    lock l(g_mu);
    if (kind < cudaMemcpyHostToHost || kind > cudaMemcpyDefault)
        return ret(cudaErrorInvalidMemcpyDirection);
    if (!copy_sides(dst, src, n, &kind, "cudaMemcpy")) return ret(cudaErrorInvalidValue);
    if (capture_forbids("cudaMemcpy")) return ret(cudaErrorStreamCaptureUnsupported);
    drain_all();
    memcpy(dst, src, n);
    return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void *p, int value, size_t n, cudaStream_t s) {
    if (!device_visible()) return ret(cudaErrorNoDevice);
    if (!n) return cudaSuccess;
    lock l(g_mu);
    if (!stream_ok(s)) return ret(cudaErrorInvalidResourceHandle);
    if (!check_device(p, n, "cudaMemsetAsync", "destination")) return ret(cudaErrorInvalidValue);
    enqueue(s, "cudaMemsetAsync", [p, value, n]() { memset(p, value, n); });
    return cudaSuccess;
}
cudaError_t cudaMemset(void *p, int value, size_t n) {
    return cudaMemsetAsync(p, value, n, nullptr);
}

/* ---- streams ---- */

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned int flags) {
    count("cudaStreamCreateWithFlags");
    if (!s) return ret(cudaErrorInvalidValue);
    if (!device_visible()) return ret(cudaErrorNoDevice);
    lock l(g_mu);
    stream_st *x = new stream_st;
    x->flags = flags;
    g_streams.push_back(x);
    *s = (cudaStream_t)x;
    return cudaSuccess;
}
cudaError_t cudaStreamCreate(cudaStream_t *s) {
    return cudaStreamCreateWithFlags(s, cudaStreamDefault);
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
    lock l(g_mu);
    if (is_default(s) || !stream_ok(s)) return ret(cudaErrorInvalidResourceHandle);
    drain(S(s)); /* its work completes before its resources go */
    S(s)->live = false;
    return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
    count("cudaStreamSynchronize");
    lock l(g_mu);
    if (!stream_ok(s)) return ret(cudaErrorInvalidResourceHandle);
    if (capture_forbids("cudaStreamSynchronize")) return ret(cudaErrorStreamCaptureUnsupported);
    if (is_default(s))
        drain_all();
    else
        drain(S(s));
    return cudaSuccess;
}
cudaError_t cudaStreamQuery(cudaStream_t s) {
    lock l(g_mu);
    if (!stream_ok(s)) return ret(cudaErrorInvalidResourceHandle);
    if (is_default(s)) return cudaSuccess;
    stream_st *x = S(s);
    if (cap_of(x)) {
        invalidate("cudaStreamQuery", "a query of a capturing stream");
        return ret(cudaErrorStreamCaptureUnsupported);
    }
    if (x->done == x->enq) return cudaSuccess;
    run_until(x, x->done + 1, false); /* progress: one item (or one step) per query */
    return x->done == x->enq ? cudaSuccess : cudaErrorNotReady;
}
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned int flags) {
    lock l(g_mu);
    if (!stream_ok(s) || !event_ok(e)) return ret(cudaErrorInvalidResourceHandle);
    event_st *ev = (event_st *)e;
    cap_member *m = is_default(s) ? nullptr : cap_of(S(s));
    if (ev->cap_epoch) {
        if (!g_cap.s || ev->cap_epoch != g_cap.epoch || is_default(s)) {
            diag("cudaStreamWaitEvent", "a wait for an event recorded in a capture that has "
                                        "ended (or on the legacy stream)");
            return ret(cudaErrorStreamCaptureIsolation);
        }
        if (!m) { /* fork: s joins the capture */
            g_cap.members.push_back(cap_member{S(s)});
            return cudaSuccess;
        }
        if (m == &g_cap.members[0]) { /* join: the origin waits for the event's stream */
            cap_member *from = cap_of(ev->cs);
            if (from && from->joined_upto < ev->cn) from->joined_upto = ev->cn;
        }
        return cudaSuccess; /* the recording keeps the host's order: nothing to queue */
    }
    if (m && ev->s) {
        invalidate("cudaStreamWaitEvent", "a wait for an event recorded outside the capture");
        return ret(cudaErrorStreamCaptureIsolation);
    }
    if (!ev->s) return cudaSuccess; /* never recorded: nothing to wait for */
    stream_st *es = ev->s;
    uint64_t seq = ev->seq;
    enqueue(s, "cudaStreamWaitEvent", [es, seq]() { run_until(es, seq); });
    return cudaSuccess;
}

/* ---- events ---- */

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned int flags) {
    count("cudaEventCreateWithFlags");
    if (!e) return ret(cudaErrorInvalidValue);
    if (!device_visible()) return ret(cudaErrorNoDevice);
    lock l(g_mu);
    event_st *x = new event_st;
    x->flags = flags;
    g_events.push_back(x);
    *e = (cudaEvent_t)x;
    return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t *e) {
    return cudaEventCreateWithFlags(e, cudaEventDefault);
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
    lock l(g_mu);
    for (size_t i = 0; i < g_events.size(); i++)
        if (g_events[i] == (event_st *)e) {
            delete g_events[i];
            g_events.erase(g_events.begin() + (long)i);
            return cudaSuccess;
        }
    return ret(cudaErrorInvalidResourceHandle);
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
    lock l(g_mu);
    if (!event_ok(e) || !stream_ok(s)) return ret(cudaErrorInvalidResourceHandle);
    event_st *ev = (event_st *)e;
    if (cap_member *m = is_default(s) ? nullptr : cap_of(S(s))) {
        ev->cap_epoch = g_cap.epoch, ev->cs = S(s), ev->cn = m->n;
        ev->s = nullptr;
        return cudaSuccess;
    }
    ev->cap_epoch = 0;
    if (is_default(s)) { /* the default stream's work is done at once */
        ev->s = nullptr;
        return cudaSuccess;
    }
    ev->s = S(s);
    ev->seq = S(s)->enq;
    return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) {
    count("cudaEventSynchronize");
    lock l(g_mu);
    if (!event_ok(e)) return ret(cudaErrorInvalidResourceHandle);
    if (capture_forbids("cudaEventSynchronize")) return ret(cudaErrorStreamCaptureUnsupported);
    event_st *ev = (event_st *)e;
    if (ev->s) run_until(ev->s, ev->seq);
    return cudaSuccess;
}
cudaError_t cudaEventQuery(cudaEvent_t e) {
    lock l(g_mu);
    if (!event_ok(e)) return ret(cudaErrorInvalidResourceHandle);
    event_st *ev = (event_st *)e;
    if (!ev->s || ev->s->done >= ev->seq) return cudaSuccess;
    run_until(ev->s, ev->s->done + 1, false);
    return ev->s->done >= ev->seq ? cudaSuccess : cudaErrorNotReady;
}

/* ---- graphs (stream capture) ---- */

cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode) {
    count("cudaStreamBeginCapture");
    lock l(g_mu);
    if (!stream_ok(s)) return ret(cudaErrorInvalidResourceHandle);
    if (is_default(s)) return ret(cudaErrorStreamCaptureUnsupported);
    if (mode != cudaStreamCaptureModeGlobal && mode != cudaStreamCaptureModeThreadLocal &&
        mode != cudaStreamCaptureModeRelaxed)
        return ret(cudaErrorInvalidValue);
    if (g_cap.s) {
        diag("cudaStreamBeginCapture", "a capture is already in progress (the emulator records "
                                       "one at a time)");
        return ret(cudaErrorIllegalState);
    }
    if (cap_of(S(s))) return ret(cudaErrorIllegalState);
    g_cap.s = S(s);
    g_cap.mode = mode;
    g_cap.owner = std::this_thread::get_id();
    g_cap.invalid = false;
    g_cap.ops.clear();
    g_cap.members.assign(1, cap_member{S(s)});
    g_cap.epoch = ++g_cap_epochs;
    return cudaSuccess;
}
cudaError_t cudaStreamIsCapturing(cudaStream_t s, cudaStreamCaptureStatus *st) {
    lock l(g_mu);
    if (!st) return ret(cudaErrorInvalidValue);
    if (!stream_ok(s)) return ret(cudaErrorInvalidResourceHandle);
    *st = !is_default(s) && cap_of(S(s))
              ? (g_cap.invalid ? cudaStreamCaptureStatusInvalidated : cudaStreamCaptureStatusActive)
              : cudaStreamCaptureStatusNone;
    return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *g) {
    count("cudaStreamEndCapture");
    lock l(g_mu);
    if (!g) return ret(cudaErrorInvalidValue);
    *g = nullptr;
    if (!stream_ok(s) || is_default(s)) return ret(cudaErrorInvalidResourceHandle);
    if (g_cap.s != S(s)) return ret(cudaErrorIllegalState); /* not capturing */
    if (g_cap.mode != cudaStreamCaptureModeRelaxed && g_cap.owner != std::this_thread::get_id())
        return ret(cudaErrorStreamCaptureWrongThread);
    bool invalid = g_cap.invalid, unjoined = false;
    for (size_t i = 1; i < g_cap.members.size(); i++)
        unjoined |= g_cap.members[i].n > g_cap.members[i].joined_upto;
    if (unjoined && !invalid)
        diag("cudaStreamEndCapture", "a stream that joined the capture has work the capturing "
                                     "stream never waited for (fork without a join)");
    graph_st *x = invalid || unjoined ? nullptr : new graph_st{std::move(g_cap.ops)};
    g_cap = capture_st();
    if (invalid) return ret(cudaErrorStreamCaptureInvalidated);
    if (unjoined) return ret(cudaErrorStreamCaptureUnjoined);
    *g = (cudaGraph_t)x;
    return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t g, unsigned long long flags) {
    count("cudaGraphInstantiate");
    lock l(g_mu);
    if (!exec || !g || flags) return ret(cudaErrorInvalidValue);
    *exec = (cudaGraphExec_t) new graph_exec_st{((graph_st *)g)->ops};
    return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t s) {
    count("cudaGraphLaunch");
    lock l(g_mu);
    if (!exec) return ret(cudaErrorInvalidValue);
    if (!stream_ok(s)) return ret(cudaErrorInvalidResourceHandle);
    if (g_cap.s) {
        invalidate("cudaGraphLaunch", "a graph launch (not recorded by this emulator)");
        return ret(cudaErrorStreamCaptureUnsupported);
    }
    for (const op &o : ((graph_exec_st *)exec)->ops) {
        count((std::string("graph:") + o.what).c_str());
        op c = o.make ? op{o.what, nullptr, o.make(), nullptr} : o; /* a fresh collective */
        if (is_default(s)) {
            drain_blocking();
            if (c.fn)
                c.fn();
            else
                run_step(c, true);
            continue;
        }
        S(s)->q.push_back(std::move(c));
        S(s)->enq++;
    }
    return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
    lock l(g_mu);
    delete (graph_exec_st *)exec;
    return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t g) {
    lock l(g_mu);
    delete (graph_st *)g;
    return cudaSuccess;
}

} // extern "C"

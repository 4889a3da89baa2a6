/* The crash report (core/crash.h): preformatted text, written async-signal-safely. */
#include "core/crash.h"

#include <dlfcn.h>
#include <execinfo.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdatomic.h>
#include <string.h>
#include <pthread.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#define INFO_MAX 8192

/* Two buffers: set_info writes the one not published, then publishes it. */
static char info_buf[2][INFO_MAX];
static _Atomic(const char *) info = NULL;
static int info_next;
static atomic_flag reporting = ATOMIC_FLAG_INIT;

static const int signals[] = {SIGSEGV, SIGBUS, SIGILL, SIGABRT, SIGFPE};

/* Objects loaded under another name (plugins: dlopen maps a private copy, /proc/self/fd/N): the
 * backtrace names the original file. Set on the main thread before the object runs; never removed. */
#define ALIAS_MAX 64
static struct {
    char alias[32];
    const char *name;
} aliases[ALIAS_MAX];
static _Atomic size_t naliases;

/* the unwinder can fault too (a plugin file overwritten under its mapping leaves garbage unwind
 * tables): the report then says so and still ends, instead of the process dying mid-report */
static sigjmp_buf unwind_env;
static void put(const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = write(2, s, n);
        if (w <= 0)
            return;
        s += w;
        n -= (size_t)w;
    }
}

static void puts2(const char *s)
{
    put(s, strlen(s));
}

static void put_hex(uintptr_t v)
{
    char b[2 + 2 * sizeof(v)];
    size_t k = sizeof(b);
    do
        b[--k] = "0123456789abcdef"[v & 15];
    while ((v >>= 4) != 0 && k > 2);
    b[--k] = 'x';
    b[--k] = '0';
    put(b + k, sizeof(b) - k);
}

static void on_unwind_fault(int sig)
{
    (void)sig;
    siglongjmp(unwind_env, 1);
}

/* One frame as backtrace_symbols_fd writes it, "file(symbol+0xoff) [0xaddr]", with a plugin's
 * original path instead of its private copy's name. */
static void put_frame(void *addr)
{
    Dl_info di;
    if (dladdr(addr, &di) == 0 || di.dli_fname == NULL) {
        puts2("?? [");
        put_hex((uintptr_t)addr);
        puts2("]\n");
        return;
    }
    const char *file = di.dli_fname;
    size_t na = atomic_load(&naliases);
    for (size_t i = 0; i < na && i < ALIAS_MAX; i++)
        if (strcmp(file, aliases[i].alias) == 0)
            file = aliases[i].name;
    puts2(file);
    puts2("(");
    if (di.dli_sname != NULL) {
        puts2(di.dli_sname);
        puts2("+");
        put_hex((uintptr_t)addr - (uintptr_t)di.dli_saddr);
    } else {
        puts2("+");
        put_hex((uintptr_t)addr - (uintptr_t)di.dli_fbase);
    }
    puts2(") [");
    put_hex((uintptr_t)addr);
    puts2("]\n");
}

static const char *signame(int sig)
{
    switch (sig) {
    case SIGSEGV:
        return "SIGSEGV";
    case SIGBUS:
        return "SIGBUS";
    case SIGILL:
        return "SIGILL";
    case SIGABRT:
        return "SIGABRT";
    case SIGFPE:
        return "SIGFPE";
    default:
        return "?";
    }
}

static void on_crash(int sig, siginfo_t *si, void *uctx)
{
    (void)si, (void)uctx;
    /* a second crash (another thread, or in here) skips the report: SA_RESETHAND made the action
     * the default, so re-raising kills the process */
    if (!atomic_flag_test_and_set(&reporting)) {
        char num[12];
        size_t k = sizeof(num);
        int v = sig;
        do
            num[--k] = (char)('0' + v % 10);
        while ((v /= 10) > 0 && k > 0);
        puts2("\ndexcache crash: signal ");
        put(num + k, sizeof(num) - k);
        puts2(" (");
        puts2(signame(sig));
        puts2(")\n");
        const char *text = atomic_load(&info);
        if (text != NULL)
            puts2(text);
        if (si != NULL && (sig == SIGSEGV || sig == SIGBUS)) {
            puts2("fault address: ");
            put_hex((uintptr_t)si->si_addr);
            puts2("\n");
        }
#if defined(__x86_64__)
        if (uctx != NULL) { /* the faulting instruction: the first frame, even if unwinding fails */
            puts2("at: ");
            put_frame((void *)(uintptr_t)((ucontext_t *)uctx)->uc_mcontext.gregs[REG_RIP]);
        }
#endif
        puts2("backtrace:\n");
        /* a fault while unwinding comes back here (SIGSEGV/SIGBUS unblocked, handled once more) */
        struct sigaction guard;
        memset(&guard, 0, sizeof(guard));
        guard.sa_handler = on_unwind_fault;
        guard.sa_flags = SA_ONSTACK | SA_NODEFER | SA_RESETHAND;
        sigemptyset(&guard.sa_mask);
        sigaction(SIGSEGV, &guard, NULL);
        sigaction(SIGBUS, &guard, NULL);
        sigset_t faults;
        sigemptyset(&faults);
        sigaddset(&faults, SIGSEGV);
        sigaddset(&faults, SIGBUS);
        if (sigsetjmp(unwind_env, 0) == 0) {
            pthread_sigmask(SIG_UNBLOCK, &faults, NULL);
            void *frames[64];
            int n = backtrace(frames, 64);
            for (int i = 0; i < n; i++)
                put_frame(frames[i]);
        } else {
            puts2("(the unwinder faulted: no further frames)\n");
        }
        pthread_sigmask(SIG_BLOCK, &faults, NULL);
        signal(SIGSEGV, SIG_DFL);
        signal(SIGBUS, SIG_DFL);
        puts2("end of dexcache crash report\n");
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

void dc_crash_thread_init(void)
{
    stack_t old;
    if (sigaltstack(NULL, &old) == 0 && !(old.ss_flags & SS_DISABLE))
        return;
    size_t size = 64 * 1024;
    void *sp = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (sp == MAP_FAILED)
        return;
    stack_t ss = {.ss_sp = sp, .ss_size = size, .ss_flags = 0};
    if (sigaltstack(&ss, NULL) != 0)
        munmap(sp, size);
}

void dc_crash_install(void)
{
    /* backtrace() loads libgcc on first use (malloc, dlopen): do it now, not in the handler */
    void *warm[2];
    backtrace(warm, 2);
    dc_crash_thread_init();
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_crash;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof(signals) / sizeof(signals[0]); i++)
        sigaction(signals[i], &sa, NULL);
}

void dc_crash_set_info(const char *text)
{
    char *b = info_buf[info_next];
    info_next ^= 1;
    size_t n = strlen(text);
    if (n >= INFO_MAX)
        n = INFO_MAX - 1;
    memcpy(b, text, n);
    b[n] = '\0';
    atomic_store(&info, b);
}

void dc_crash_name_object(const char *alias, const char *name)
{
    size_t i = atomic_load(&naliases);
    if (i >= ALIAS_MAX || strlen(alias) >= sizeof(aliases[i].alias))
        return;
    memcpy(aliases[i].alias, alias, strlen(alias) + 1);
    aliases[i].name = name;
    atomic_store(&naliases, i + 1);
}

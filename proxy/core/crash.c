/* The crash report (core/crash.h): preformatted text, written async-signal-safely. */
#include "core/crash.h"

#include <execinfo.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define INFO_MAX 8192

/* Two buffers: set_info writes the one not published, then publishes it. */
static char info_buf[2][INFO_MAX];
static _Atomic(const char *) info = NULL;
static int info_next;
static atomic_flag reporting = ATOMIC_FLAG_INIT;

static const int signals[] = {SIGSEGV, SIGBUS, SIGILL, SIGABRT, SIGFPE};

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
        puts2("backtrace:\n");
        void *frames[64];
        int n = backtrace(frames, 64);
        backtrace_symbols_fd(frames, n, 2);
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

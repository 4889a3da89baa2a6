/*
 * The crash report: on SIGSEGV, SIGBUS, SIGILL, SIGABRT or SIGFPE, write to stderr (fd 2)
 * "dexcache crash: signal N (NAME)", the text last given to dc_crash_set_info (dexcache's version,
 * the loaded plugins with their versions and ABI), and a backtrace, then die of the same signal
 * (the handler is installed with SA_RESETHAND and re-raises, so exit status and core dumps are
 * those of the signal).
 *
 * The handler only calls write(2), backtrace(3), dladdr(3) and raise(3); everything it prints but
 * the signal number, the fault address and the frames is formatted beforehand, on the main thread.
 * A fault inside the unwinder (unwind tables of a mapping that changed) ends the frames with a note
 * instead of killing the process mid-report.
 */
#ifndef DC_CORE_CRASH_H
#define DC_CORE_CRASH_H

/* Install the handlers (main thread, once, early) and an alternate signal stack for this thread
 * (a stack overflow still reports). */
void dc_crash_install(void);
/* An alternate signal stack for the calling thread, unless it has one (worker threads at start;
 * ASan builds give each thread one already). Never freed: the thread may crash until it exits. */
void dc_crash_thread_init(void);
/* The text the report carries (copied; at most 8 KiB, cut beyond). Main thread only (start-up,
 * each reload); a crash on another thread at the same moment prints the previous or the new text. */
void dc_crash_set_info(const char *text);
/* Frames in the object dlopen knows as `alias` (at most 31 bytes, e.g. "/proc/self/fd/7": a
 * plugin's private copy) are reported under `name` (kept, not copied: it must live for the
 * process). Main thread only, before the object runs; at most 64 objects. */
void dc_crash_name_object(const char *alias, const char *name);

#endif

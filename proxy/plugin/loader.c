/*
 * Loading plugin files: dlopen(RTLD_NOW | RTLD_LOCAL), never dlclose (pointers into a plugin stay
 * valid for the process), and the ABI checks of plugin.h: magic, equal major, minor not above
 * ours, struct size, name, reserved slots. Every refusal names the file. Main thread only (start,
 * -t, reloads): the registry of loaded files needs no lock.
 *
 * dlopen maps the file it opens: a plugin overwritten in place (`cp new.so loaded.so`, which
 * truncates and rewrites the same inode) would change the code and data under the running
 * process, and the next call into it crashes. So a plugin is loaded from a private copy: the file
 * is copied into a memfd_create() file that nothing else can write, and dlopen maps
 * /proc/self/fd/N; the memfd is sealed (no write, no resize) and stays open for the process's
 * life (plugins are never unloaded; the loader knows the object by that name).
 * Messages, -v, /health and the crash report name the original path; the checks (world-writable,
 * ELF, changed on reload) look at the original file.
 */
#include "plugin/plugin_private.h"
#include "core/crash.h"
#include "core/error.h"
#include "core/log.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U /* Linux 6.3: executable memfd where vm.memfd_noexec asks for it */
#endif

static dc__plugin_file_t **files;
static size_t nfiles;

static bool valid_name(const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;
    if (n == 0 || n > 32)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '-'))
            return false;
    return true;
}

/* Readable, a regular file, not writable by everyone (any local user could replace the code
 * dexcache runs), and an ELF object: clearer errors than dlopen's for the usual slips. Fills *out
 * and returns the open file (O_CLOEXEC, the caller closes it), or a negative DC_E*. */
static int precheck(const char *path, struct stat *out, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        snprintf(err, errlen, "plugin %s: cannot read: %s", path, strerror(errno));
        return DC_EIO;
    }
    struct stat st;
    unsigned char magic[4] = {0};
    ssize_t n = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) ? read(fd, magic, 4) : -1;
    if (n < 0 && !S_ISREG(st.st_mode)) {
        close(fd);
        snprintf(err, errlen, "plugin %s: cannot read: not a regular file", path);
        return DC_EIO;
    }
    if (st.st_mode & S_IWOTH) {
        close(fd);
        snprintf(err, errlen, "plugin %s: writable by every user: refused (chmod o-w)", path);
        return DC_ECONFIG;
    }
    if (n != 4 || memcmp(magic, "\177ELF", 4) != 0) {
        close(fd);
        snprintf(err, errlen, "plugin %s: not an ELF shared object", path);
        return DC_ECONFIG;
    }
    *out = st;
    return fd;
}

/* A private copy of the open file `fd` (size bytes) in a new memfd: the fd, or -1 with errno set. */
static int private_copy(int fd, off_t size)
{
    int mfd = memfd_create("dexcache-plugin", MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_EXEC);
    if (mfd < 0 && errno == EINVAL) /* a kernel before 6.3 knows no MFD_EXEC */
        mfd = memfd_create("dexcache-plugin", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (mfd < 0)
        return -1;
    char buf[65536];
    off_t off = 0;
    for (;;) {
        ssize_t n = pread(fd, buf, sizeof(buf), off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            /* sealed: not even a write through /proc/PID/fd/N changes the copy dlopen maps */
            if (n == 0 && off >= size &&
                fcntl(mfd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) == 0)
                return mfd;
            if (n == 0 && off >= size) {
                int e = errno;
                close(mfd);
                errno = e;
                return -1;
            }
            int e = n < 0 ? errno : EIO; /* shorter than it was at fstat: changed while copied */
            close(mfd);
            errno = e;
            return -1;
        }
        for (ssize_t done = 0; done < n;) {
            ssize_t w = write(mfd, buf + done, (size_t)(n - done));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                int e = errno;
                close(mfd);
                errno = e;
                return -1;
            }
            done += w;
        }
        off += n;
    }
}

static int check_abi(const char *path, const dexcache_plugin_t *p, char *err, size_t errlen)
{
    if (p->magic != DEXCACHE_PLUGIN_MAGIC) {
        snprintf(err, errlen, "plugin %s: bad magic 0x%08x in dexcache_plugin (expected 0x%08x): not a dexcache plugin",
                 path, p->magic, DEXCACHE_PLUGIN_MAGIC);
        return DC_ECONFIG;
    }
    if (p->abi_major != DEXCACHE_PLUGIN_ABI_MAJOR || p->abi_minor > DEXCACHE_PLUGIN_ABI_MINOR) {
        snprintf(err, errlen, "plugin %s: built for plugin ABI %u.%u, this dexcache has ABI %u.%u (%s)", path,
                 (unsigned)p->abi_major, (unsigned)p->abi_minor, DEXCACHE_PLUGIN_ABI_MAJOR, DEXCACHE_PLUGIN_ABI_MINOR,
                 p->abi_major != DEXCACHE_PLUGIN_ABI_MAJOR ? "the major version must be equal"
                                                           : "the minor version must not be above the host's");
        return DC_ECONFIG;
    }
    if (p->size != sizeof(dexcache_plugin_t)) {
        snprintf(err, errlen, "plugin %s: dexcache_plugin has size %u, expected %zu for ABI %u.x", path,
                 (unsigned)p->size, sizeof(dexcache_plugin_t), DEXCACHE_PLUGIN_ABI_MAJOR);
        return DC_ECONFIG;
    }
    for (size_t i = 0; i < sizeof(p->reserved) / sizeof(p->reserved[0]); i++) {
        if (p->reserved[i] != NULL) {
            snprintf(err, errlen, "plugin %s: reserved slot %zu is set (a hook of a later ABI minor?)", path, i);
            return DC_ECONFIG;
        }
    }
    if (!valid_name(p->name) || p->version == NULL) {
        snprintf(err, errlen, "plugin %s: expected a name of 1 to 32 characters [a-z0-9_-] and a version string", path);
        return DC_ECONFIG;
    }
    return 0;
}

int dc__plugin_load(const char *path, dc__plugin_file_t **out, char *err, size_t errlen)
{
    struct stat st;
    int fd = precheck(path, &st, err, errlen), rc;
    if (fd < 0)
        return fd;
    char *real = realpath(path, NULL);
    if (real == NULL) {
        snprintf(err, errlen, "plugin %s: cannot read: %s", path, strerror(errno));
        close(fd);
        return DC_EIO;
    }
    dc__plugin_file_t *f = NULL;
    for (size_t i = 0; i < nfiles && f == NULL; i++)
        if (strcmp(files[i]->path, real) == 0)
            f = files[i];
    if (f != NULL && (f->dev != st.st_dev || f->ino != st.st_ino || f->size != st.st_size ||
                      f->mtime.tv_sec != st.st_mtim.tv_sec || f->mtime.tv_nsec != st.st_mtim.tv_nsec))
        dc_log_warn("plugin %s changed on disk since it was loaded: the loaded code keeps running until "
                    "dexcache restarts (plugins are never unloaded)",
                    path);
    if (f == NULL) {
        int mfd = private_copy(fd, st.st_size);
        if (mfd < 0) {
            snprintf(err, errlen, "plugin %s: cannot copy it into memory (memfd_create): %s", path, strerror(errno));
            close(fd);
            free(real);
            return DC_EIO;
        }
        char mpath[64];
        snprintf(mpath, sizeof(mpath), "/proc/self/fd/%d", mfd);
        dlerror();
        void *dl = dlopen(mpath, RTLD_NOW | RTLD_LOCAL);
        if (dl == NULL) {
            const char *why = dlerror();
            /* dlerror names the copy: say the original instead */
            if (why != NULL && strncmp(why, mpath, strlen(mpath)) == 0 && why[strlen(mpath)] == ':')
                why += strlen(mpath) + 1 + (why[strlen(mpath) + 1] == ' ');
            snprintf(err, errlen, "plugin %s: cannot load: %s", path, why != NULL ? why : "dlopen failed");
            close(mfd);
            close(fd);
            free(real);
            return DC_ECONFIG;
        }
        const dexcache_plugin_t *p = dlsym(dl, DEXCACHE_PLUGIN_SYMBOL);
        if (p == NULL) {
            /* never dlclose: constructors may have run, and a plugin's pointers must not dangle */
            snprintf(err, errlen, "plugin %s: does not export the symbol %s", path, DEXCACHE_PLUGIN_SYMBOL);
            close(fd); /* mfd stays open: the loader knows the object by its /proc/self/fd name */
            free(real);
            return DC_ECONFIG;
        }
        if ((rc = check_abi(path, p, err, errlen)) != 0) {
            close(fd);
            free(real);
            return rc;
        }
        for (size_t i = 0; i < nfiles; i++) {
            if (strcmp(files[i]->p->name, p->name) == 0) {
                snprintf(err, errlen, "plugin %s: the plugin name '%s' is already taken by %s", path, p->name,
                         files[i]->path);
                close(fd);
                free(real);
                return DC_ECONFIG;
            }
        }
        f = dc_calloc(1, sizeof(*f));
        f->path = real;
        real = NULL;
        f->dl = dl;
        f->memfd = mfd;
        dc_crash_name_object(mpath, f->path); /* the crash report's frames name the file */
        f->p = p;
        f->dev = st.st_dev;
        f->ino = st.st_ino;
        f->size = st.st_size;
        f->mtime = st.st_mtim;
        files = dc_realloc(files, (nfiles + 1) * sizeof(*files));
        files[nfiles++] = f;
    }
    close(fd);
    free(real);
    if (!f->inited && f->p->init != NULL) {
        char why[512] = "";
        if (f->p->init(&dc__plugin_host, why, sizeof(why)) != DEXCACHE_CONTINUE) {
            snprintf(err, errlen, "plugin %s: init failed: %s", path, why[0] ? why : "(no message)");
            return DC_ECONFIG;
        }
    }
    f->inited = true;
    *out = f;
    return 0;
}

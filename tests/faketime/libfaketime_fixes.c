/* Loaded before libfaketime by the nox session `future` (noxfile.py), which moves the wall clock of the
 * whole process tree a year ahead with FAKETIME_DONT_FAKE_MONOTONIC=1 (monotonic clocks stay real).
 * It fixes four ways in which libfaketime 0.9.10 (Debian 12) itself breaks programs under it:
 *
 * 1. clock_nanosleep: libfaketime shifts the deadline of an absolute sleep on a monotonic clock by the
 *    fake offset although that clock is real, and the call fails with EINVAL: Python's time.sleep() is
 *    exactly that call. Monotonic sleeps go straight to the kernel.
 * 2. shm_open: at start-up libfaketime opens a shared-memory object and keeps its descriptor for the
 *    life of the process. It takes the lowest free descriptor, so in a child started with stdin or
 *    stdout closed it becomes fd 0 or 1 and the program cannot see that its stdin/stdout is closed.
 *    That descriptor is moved above 2.
 * 3. pthread_cond_init/destroy/timedwait: libfaketime keeps a table of the monotonic condition
 *    variables (behind a lock it destroys at exit) and computes a monotonic cond's deadline from a
 *    faked monotonic reading (it ignores FAKETIME_DONT_FAKE_MONOTONIC there), so every timed wait on
 *    one returns at once: CPython's GIL waits spin, and now and then a CPython process died with
 *    "take_gil: PyCOND_WAIT(gil->cond) failed". They go straight to glibc here: a monotonic cond's
 *    deadline is real time already; a realtime cond's was computed from the fake wall clock, so it is
 *    moved back by the fake offset (a fixed offset: the session sets no clock rate). libfaketime wraps
 *    no other pthread_cond_* function.
 * 4. nanosleep, sleep, usleep, poll, ppoll, select, pselect, epoll_wait, epoll_pwait: libfaketime only
 *    scales their timeouts by a clock rate (the session sets none) but waits with its "do not fake"
 *    flag set, so a signal handler that reads the clock during the wait gets the real time: woken in
 *    epoll_wait by its statement_timeout alarm, PostgreSQL saw the deadline a year away and re-armed
 *    the alarm for a year. They go straight to glibc. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static void *libc_symbol(const char *name, const char *version)
{
    void *libc = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
    if (libc == NULL) {
        return NULL;
    }
    return version == NULL ? dlsym(libc, name) : dlvsym(libc, name, version);
}

/* 1. Sleeps on a real (monotonic) clock. */

typedef int (*clock_nanosleep_fn)(clockid_t, int, const struct timespec *, struct timespec *);

int clock_nanosleep(clockid_t clock_id, int flags, const struct timespec *request, struct timespec *remain)
{
    if (clock_id == CLOCK_MONOTONIC || clock_id == CLOCK_MONOTONIC_RAW || clock_id == CLOCK_BOOTTIME) {
        if (syscall(SYS_clock_nanosleep, clock_id, flags, request, remain) == 0) {
            return 0;
        }
        return errno;
    }
    static clock_nanosleep_fn next;
    if (next == NULL) {
        next = (clock_nanosleep_fn)dlsym(RTLD_NEXT, "clock_nanosleep");
    }
    return next(clock_id, flags, request, remain);
}

/* 2. libfaketime's shared memory never takes stdin, stdout or stderr. */

typedef int (*shm_open_fn)(const char *, int, mode_t);

int shm_open(const char *name, int oflag, mode_t mode)
{
    static shm_open_fn next;
    if (next == NULL) {
        next = (shm_open_fn)dlsym(RTLD_NEXT, "shm_open");
    }
    int fd = next(name, oflag, mode);
    if (fd >= 0 && fd <= STDERR_FILENO && strncmp(name, "/faketime_", 10) == 0) {
        int moved = fcntl(fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
        if (moved >= 0) {
            close(fd);
            fd = moved;
        }
    }
    return fd;
}

/* 3. Condition variables without libfaketime's table. */

typedef int (*cond_init_fn)(pthread_cond_t *, const pthread_condattr_t *);
typedef int (*cond_destroy_fn)(pthread_cond_t *);
typedef int (*cond_timedwait_fn)(pthread_cond_t *, pthread_mutex_t *, const struct timespec *);

static cond_init_fn glibc_cond_init;
static cond_destroy_fn glibc_cond_destroy;
static cond_timedwait_fn glibc_cond_timedwait;

/* glibc (2.25 and later) keeps a condition variable's clock in bit 1 of __wrefs (the other bits are
 * waiter counts that change under us, hence the atomic load); checked at load. */
static int is_monotonic(const pthread_cond_t *cond)
{
    return (__atomic_load_n(&cond->__data.__wrefs, __ATOMIC_RELAXED) >> 1) & 1;
}

static void die(const char *message)
{
    (void)!write(STDERR_FILENO, message, strlen(message));
    abort();
}

/* glibc's own functions (the versions every program since glibc 2.3.2 calls), not libfaketime's. */
static void find_glibc_conds(void)
{
    glibc_cond_init = (cond_init_fn)libc_symbol("pthread_cond_init", "GLIBC_2.3.2");
    glibc_cond_destroy = (cond_destroy_fn)libc_symbol("pthread_cond_destroy", "GLIBC_2.3.2");
    glibc_cond_timedwait = (cond_timedwait_fn)libc_symbol("pthread_cond_timedwait", "GLIBC_2.3.2");
    if (glibc_cond_init == NULL || glibc_cond_destroy == NULL || glibc_cond_timedwait == NULL) {
        die("libfaketime_fixes: glibc's pthread_cond_* (GLIBC_2.3.2) not found\n");
    }
    pthread_condattr_t attr;
    pthread_cond_t monotonic, realtime;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    glibc_cond_init(&monotonic, &attr);
    glibc_cond_init(&realtime, NULL);
    if (!is_monotonic(&monotonic) || is_monotonic(&realtime)) {
        die("libfaketime_fixes: this glibc keeps a condition variable's clock elsewhere\n");
    }
    glibc_cond_destroy(&monotonic);
    glibc_cond_destroy(&realtime);
    pthread_condattr_destroy(&attr);
}

static pthread_once_t found = PTHREAD_ONCE_INIT;

__attribute__((constructor)) static void check_at_load(void)
{
    pthread_once(&found, find_glibc_conds);
}

int pthread_cond_init(pthread_cond_t *cond, const pthread_condattr_t *attr)
{
    pthread_once(&found, find_glibc_conds);
    return glibc_cond_init(cond, attr);
}

int pthread_cond_destroy(pthread_cond_t *cond)
{
    pthread_once(&found, find_glibc_conds);
    return glibc_cond_destroy(cond);
}

int pthread_cond_timedwait(pthread_cond_t *cond, pthread_mutex_t *mutex, const struct timespec *deadline)
{
    pthread_once(&found, find_glibc_conds);
    if (is_monotonic(cond) || deadline->tv_nsec < 0 || deadline->tv_nsec >= 1000000000L) {
        return glibc_cond_timedwait(cond, mutex, deadline); /* glibc refuses a bad deadline itself */
    }
    struct timespec fake, real, moved;
    clock_gettime(CLOCK_REALTIME, &fake); /* libfaketime's */
    syscall(SYS_clock_gettime, CLOCK_REALTIME, &real);
    moved.tv_sec = deadline->tv_sec - (fake.tv_sec - real.tv_sec);
    moved.tv_nsec = deadline->tv_nsec - (fake.tv_nsec - real.tv_nsec);
    if (moved.tv_nsec < 0) {
        moved.tv_sec -= 1;
        moved.tv_nsec += 1000000000L;
    } else if (moved.tv_nsec >= 1000000000L) {
        moved.tv_sec += 1;
        moved.tv_nsec -= 1000000000L;
    }
    return glibc_cond_timedwait(cond, mutex, &moved);
}

/* 4. Relative waits without libfaketime's "do not fake" flag. */

#define STRAIGHT_TO_GLIBC(type, name, params, args)                    \
    type name params                                                   \
    {                                                                  \
        static type(*glibc) params;                                    \
        if (glibc == NULL) {                                           \
            glibc = (type(*) params)libc_symbol(#name, NULL);          \
        }                                                              \
        return glibc args;                                             \
    }

STRAIGHT_TO_GLIBC(int, nanosleep, (const struct timespec *req, struct timespec *rem), (req, rem))
STRAIGHT_TO_GLIBC(unsigned int, sleep, (unsigned int seconds), (seconds))
STRAIGHT_TO_GLIBC(int, usleep, (useconds_t usec), (usec))
STRAIGHT_TO_GLIBC(int, poll, (struct pollfd *fds, nfds_t n, int timeout), (fds, n, timeout))
STRAIGHT_TO_GLIBC(int, ppoll, (struct pollfd *fds, nfds_t n, const struct timespec *timeout, const sigset_t *mask),
                  (fds, n, timeout, mask))
STRAIGHT_TO_GLIBC(int, select, (int n, fd_set *r, fd_set *w, fd_set *e, struct timeval *timeout),
                  (n, r, w, e, timeout))
STRAIGHT_TO_GLIBC(int, pselect,
                  (int n, fd_set *r, fd_set *w, fd_set *e, const struct timespec *timeout, const sigset_t *mask),
                  (n, r, w, e, timeout, mask))
STRAIGHT_TO_GLIBC(int, epoll_wait, (int fd, struct epoll_event *events, int max, int timeout),
                  (fd, events, max, timeout))
STRAIGHT_TO_GLIBC(int, epoll_pwait, (int fd, struct epoll_event *events, int max, int timeout, const sigset_t *mask),
                  (fd, events, max, timeout, mask))

/*
 * Intrusive cross-thread messages: another thread posts a dc_msg_t to a worker; the worker runs
 * its callback on its own loop. The message memory belongs to the sender's protocol (usually it
 * is embedded in an object whose ownership the message carries).
 */
#ifndef DC_CORE_MAILBOX_H
#define DC_CORE_MAILBOX_H

typedef struct dc_msg dc_msg_t;
struct dc_msg {
    dc_msg_t *next;
    void (*run)(dc_msg_t *msg);
};

#endif

/*
 * A test stand-in for NVIDIA's libnvidia-nscq: the same exported symbols and C ABI (NSCQ API 2.x
 * attestation subset: sessions, path observers with by-value result structs, set_input, UUID
 * labels), answering from files instead of NVSwitch hardware.
 *
 * $FAKE_NSCQ_DIR holds:
 *   count                      number of switches (text)
 *   session_rc                 optional: return code of nscq_session_create (text)
 *   <i>/uuid                   16 raw bytes
 *   <i>/arch, <i>/tnvl         int8 values (text)
 *   <i>/certificate            the chain bytes
 *   <i>/report-<hex nonce>     the signed report for that nonce (set through nscq_session_set_input)
 *   <i>/rc-<leaf>              optional: the return code the callback gets for path leaf
 *                              (arch, pcie_mode, certificate, attestation_report)
 * Every session created and destroyed is counted in $FAKE_NSCQ_DIR/sessions ("+" / "-").
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int8_t nscq_rc_t;
typedef struct { uint8_t bytes[16]; } nscq_uuid_t;
typedef struct { char data[64]; } nscq_label_t;
typedef struct { uint32_t report_size; uint8_t report[0x2000]; } nscq_attestation_report_t;
typedef struct { uint8_t cert_chain[0x1400]; uint32_t cert_chain_size; } nscq_attestation_certificate_t;
typedef struct fake_session { uint8_t nonce[32]; int has_nonce; } *nscq_session_t;
typedef struct { nscq_rc_t rc; nscq_session_t session; } nscq_session_result_t;
typedef void (*nscq_fn_t)(void);

typedef void (*uuid_cb)(const void *, nscq_rc_t, const nscq_uuid_t *, void *);
typedef void (*int8_cb)(const nscq_uuid_t *, nscq_rc_t, int8_t, void *);
typedef void (*report_cb)(const nscq_uuid_t *, nscq_rc_t, nscq_attestation_report_t, void *);
typedef void (*cert_cb)(const nscq_uuid_t *, nscq_rc_t, nscq_attestation_certificate_t, void *);

const uint32_t nscq_api_version = (2u << 24);

static const char *dir(void) { const char *d = getenv("FAKE_NSCQ_DIR"); return d ? d : "."; }

static long read_file(const char *name, uint8_t *out, long max) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir(), name);
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    long n = (long)fread(out, 1, (size_t)max, f);
    fclose(f);
    return n;
}

static int read_int(const char *name, int fallback) {
    uint8_t buf[32] = {0};
    if (read_file(name, buf, sizeof buf - 1) < 0) return fallback;
    return atoi((const char *)buf);
}

static void log_session(const char *what) {
    char path[4096];
    snprintf(path, sizeof path, "%s/sessions", dir());
    FILE *f = fopen(path, "ab");
    if (f) { fputs(what, f); fclose(f); }
}

static int count(void) { return read_int("count", 0); }

static void label_of(const nscq_uuid_t *uuid, char *out) {
    strcpy(out, "SWX-");
    for (int i = 0; i < 16; i++) sprintf(out + 4 + 2 * i, "%02X", uuid->bytes[i]);
}

static int uuid_of(int index, nscq_uuid_t *uuid) {
    char name[64];
    snprintf(name, sizeof name, "%d/uuid", index);
    return read_file(name, uuid->bytes, 16) == 16;
}

nscq_rc_t nscq_uuid_to_label(const nscq_uuid_t *uuid, nscq_label_t *label, uint32_t flags) {
    (void)flags;
    if (!uuid || !label) return -5;
    memset(label, 0, sizeof *label);
    label_of(uuid, label->data);
    return 0;
}

nscq_session_result_t nscq_session_create(uint32_t flags) {
    nscq_session_result_t result = {0, NULL};
    (void)flags;
    result.rc = (nscq_rc_t)read_int("session_rc", 0);
    if (result.rc < 0) return result;
    result.session = calloc(1, sizeof *result.session);
    log_session("+");
    return result;
}

void nscq_session_destroy(nscq_session_t session) {
    if (session) { free(session); log_session("-"); }
}

nscq_rc_t nscq_session_set_input(nscq_session_t session, uint32_t flags, void *input, uint32_t size) {
    (void)flags;
    if (!session || !input || size != 32) return -5;
    memcpy(session->nonce, input, 32);
    session->has_nonce = 1;
    return 0;
}

static void answer(nscq_session_t s, int index, const nscq_uuid_t *uuid, const char *leaf, nscq_fn_t fn,
                   void *user) {
    char name[256];
    snprintf(name, sizeof name, "%d/rc-%s", index, leaf);
    nscq_rc_t rc = (nscq_rc_t)read_int(name, 0);
    if (!strcmp(leaf, "arch") || !strcmp(leaf, "pcie_mode")) {
        snprintf(name, sizeof name, "%d/%s", index, strcmp(leaf, "arch") ? "tnvl" : "arch");
        ((int8_cb)fn)(uuid, rc, (int8_t)read_int(name, -1), user);
    } else if (!strcmp(leaf, "certificate")) {
        static nscq_attestation_certificate_t cert;
        memset(&cert, 0, sizeof cert);
        snprintf(name, sizeof name, "%d/certificate", index);
        long n = read_file(name, cert.cert_chain, sizeof cert.cert_chain);
        cert.cert_chain_size = n < 0 ? 0 : (uint32_t)n;
        if (n < 0 && rc == 0) rc = -5;
        ((cert_cb)fn)(uuid, rc, cert, user);
    } else {
        static nscq_attestation_report_t report;
        memset(&report, 0, sizeof report);
        long n = -1;
        if (s->has_nonce) {
            int at = snprintf(name, sizeof name, "%d/report-", index);
            for (int i = 0; i < 32; i++) at += sprintf(name + at, "%02x", s->nonce[i]);
            n = read_file(name, report.report, sizeof report.report);
        }
        report.report_size = n < 0 ? 0 : (uint32_t)n;
        if (n < 0 && rc == 0) rc = -5; /* no report for this nonce: NSCQ_RC_ERROR_UNEXPECTED_VALUE */
        ((report_cb)fn)(uuid, rc, report, user);
    }
}

nscq_rc_t nscq_session_path_observe(nscq_session_t session, const char *path, nscq_fn_t fn, void *user,
                                    uint32_t flags) {
    (void)flags;
    if (!session || !path || !fn) return -5;
    int n = count();
    if (!strcmp(path, "/drv/nvswitch/{device}/uuid")) {
        for (int i = 0; i < n; i++) {
            nscq_uuid_t uuid;
            if (!uuid_of(i, &uuid)) return -7;
            ((uuid_cb)fn)((const void *)(intptr_t)i, 0, &uuid, user);
        }
        return 0;
    }
    if (path[0] != '/') return -5;
    const char *slash = strchr(path + 1, '/');
    if (!slash) return -5;
    char device[128] = {0};
    size_t len = (size_t)(slash - path - 1);
    if (len >= sizeof device) return -2;
    memcpy(device, path + 1, len);
    const char *leaf;
    if (!strcmp(slash, "/id/arch")) leaf = "arch";
    else if (!strcmp(slash, "/config/pcie_mode")) leaf = "pcie_mode";
    else if (!strcmp(slash, "/config/certificate")) leaf = "certificate";
    else if (!strcmp(slash, "/config/attestation_report")) leaf = "attestation_report";
    else return -1;
    int matched = 0;
    for (int i = 0; i < n; i++) {
        nscq_uuid_t uuid;
        char label[64];
        if (!uuid_of(i, &uuid)) return -7;
        label_of(&uuid, label);
        if (strcmp(device, "{nvswitch}") && strcmp(device, label)) continue;
        matched = 1;
        answer(session, i, &uuid, leaf, fn, user);
    }
    return matched || !strcmp(device, "{nvswitch}") ? 0 : -2; /* an unknown label: INVALID_UUID */
}

/* mbedTLS glue: one RNG, a server configuration (TLS 1.2 and, where the library has it, 1.3, with
 * session tickets) and a client configuration (the CA, host name checked), sessions on our sockets.
 * Builds against mbedTLS 2.28 (Debian 12) and 3.x (ESP-IDF 5.x). */
#define _POSIX_C_SOURCE 200809L
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "hil_platform.h"
#include "hil_services.h"
#include "mbedtls/version.h"
/* mbedTLS 4 (ESP-IDF >= 6.0) takes every random byte from PSA: the DRBG of 2.x/3.x is gone from its API. */
#define HIL_TLS_OWN_RNG (MBEDTLS_VERSION_MAJOR < 4)
#if HIL_TLS_OWN_RNG
#include "mbedtls/ctr_drbg.h"
#include "mbedtls/entropy.h"
#endif
#include "mbedtls/error.h"
#include "mbedtls/net_sockets.h" /* error codes only: no mbedtls_net_* call ever (see tls.h) */
#include "mbedtls/pk.h"
#include "mbedtls/ssl.h"
#include "mbedtls/ssl_ticket.h"
#include "mbedtls/x509_crt.h"
#include "net_util.h"
#if !HIL_TLS_OWN_RNG || (defined(MBEDTLS_PSA_CRYPTO_C) && MBEDTLS_VERSION_MAJOR >= 3)
#define HIL_TLS_PSA 1
#include "psa/crypto.h"
#endif

#define TAG "hil_tls"
/* Tickets need the ticket context's own lock: several connection threads use it. */
#if defined(MBEDTLS_SSL_TICKET_C) && defined(MBEDTLS_THREADING_C)
#define HIL_TLS_TICKETS 1
#define TICKET_LIFETIME_S 86400
#endif

struct hil_tls_session {
    mbedtls_ssl_context ssl;
    int fd;
    uint32_t deadline_ms;
    int host_is_ip;
    uint8_t ip[4];
};

#if HIL_TLS_OWN_RNG
static hil_mutex_t *rng_lock;
static mbedtls_entropy_context entropy;
static mbedtls_ctr_drbg_context drbg;
#endif
static int rng_ready;
static mbedtls_x509_crt ca_chain;
static mbedtls_ssl_config client_conf;
static int client_ready;
static mbedtls_x509_crt server_chain;
static mbedtls_pk_context server_key;
static mbedtls_ssl_config server_conf;
static int server_ready;
#ifdef HIL_TLS_TICKETS
static mbedtls_ssl_ticket_context tickets;
#endif

static void log_mbedtls(const char *what, int ret)
{
    char text[100] = "";
#ifdef MBEDTLS_ERROR_C
    mbedtls_strerror(ret, text, sizeof text);
#endif
    hil_log(HIL_LOG_WARN, TAG, "%s: -0x%04x %s", what, (unsigned)-ret, text);
}

#if HIL_TLS_OWN_RNG
/* ctr_drbg is not thread-safe without MBEDTLS_THREADING_C: every connection thread comes through here. */
static int locked_random(void *ctx, unsigned char *out, size_t len)
{
    hil_mutex_lock(rng_lock);
    int ret = mbedtls_ctr_drbg_random(ctx, out, len);
    hil_mutex_unlock(rng_lock);
    return ret;
}
#endif

static void conf_rng(mbedtls_ssl_config *conf)
{
#if HIL_TLS_OWN_RNG
    mbedtls_ssl_conf_rng(conf, locked_random, &drbg);
#else
    (void)conf; /* mbedTLS 4: the TLS layer draws from PSA */
#endif
}

static int setup_rng(void)
{
    if (rng_ready) {
        return 0;
    }
#ifdef HIL_TLS_PSA
    if (psa_crypto_init() != PSA_SUCCESS) {
        hil_log(HIL_LOG_ERROR, TAG, "psa_crypto_init failed");
        return -1;
    }
#endif
#if HIL_TLS_OWN_RNG
    rng_lock = hil_mutex_create();
    mbedtls_entropy_init(&entropy);
    mbedtls_ctr_drbg_init(&drbg);
    static const char personalisation[] = "esp-smoltcp-hil services";
    int ret = rng_lock == NULL ? -1
                               : mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy,
                                                       (const unsigned char *)personalisation, sizeof personalisation);
    if (ret != 0) {
        log_mbedtls("seeding the RNG", ret);
        return -1;
    }
#endif
    rng_ready = 1;
    return 0;
}

static void require_tls_1_2(mbedtls_ssl_config *conf)
{
#if MBEDTLS_VERSION_MAJOR >= 3
    mbedtls_ssl_conf_min_tls_version(conf, MBEDTLS_SSL_VERSION_TLS1_2);
#else
    mbedtls_ssl_conf_min_version(conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
#endif
}

static int pem_length(const char *pem)
{
    return (int)strlen(pem) + 1; /* mbedTLS wants the terminating NUL counted for PEM */
}

static int setup_client(const char *ca_pem)
{
    mbedtls_x509_crt_init(&ca_chain);
    mbedtls_ssl_config_init(&client_conf);
    int ret = mbedtls_x509_crt_parse(&ca_chain, (const unsigned char *)ca_pem, (size_t)pem_length(ca_pem));
    if (ret != 0) {
        log_mbedtls("parsing the CA certificate", ret);
        return -1;
    }
    ret = mbedtls_ssl_config_defaults(&client_conf, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM,
                                      MBEDTLS_SSL_PRESET_DEFAULT);
    if (ret != 0) {
        log_mbedtls("client configuration", ret);
        return -1;
    }
    require_tls_1_2(&client_conf);
    mbedtls_ssl_conf_authmode(&client_conf, MBEDTLS_SSL_VERIFY_REQUIRED);
    mbedtls_ssl_conf_ca_chain(&client_conf, &ca_chain, NULL);
    conf_rng(&client_conf);
    client_ready = 1;
    return 0;
}

static int setup_server(const char *cert_pem, const char *key_pem)
{
    mbedtls_x509_crt_init(&server_chain);
    mbedtls_pk_init(&server_key);
    mbedtls_ssl_config_init(&server_conf);
    int ret = mbedtls_x509_crt_parse(&server_chain, (const unsigned char *)cert_pem, (size_t)pem_length(cert_pem));
    if (ret != 0) {
        log_mbedtls("parsing the server certificate", ret);
        return -1;
    }
#if MBEDTLS_VERSION_MAJOR == 3
    ret = mbedtls_pk_parse_key(&server_key, (const unsigned char *)key_pem, (size_t)pem_length(key_pem), NULL, 0,
                               locked_random, &drbg);
#else /* 2.x, and 4.x (which takes its randomness from PSA) */
    ret = mbedtls_pk_parse_key(&server_key, (const unsigned char *)key_pem, (size_t)pem_length(key_pem), NULL, 0);
#endif
    if (ret != 0) {
        log_mbedtls("parsing the server key", ret);
        return -1;
    }
    ret = mbedtls_ssl_config_defaults(&server_conf, MBEDTLS_SSL_IS_SERVER, MBEDTLS_SSL_TRANSPORT_STREAM,
                                      MBEDTLS_SSL_PRESET_DEFAULT);
    if (ret == 0) {
        ret = mbedtls_ssl_conf_own_cert(&server_conf, &server_chain, &server_key);
    }
    if (ret != 0) {
        log_mbedtls("server configuration", ret);
        return -1;
    }
    require_tls_1_2(&server_conf);
    conf_rng(&server_conf);
#ifdef HIL_TLS_TICKETS
    mbedtls_ssl_ticket_init(&tickets);
#if HIL_TLS_OWN_RNG
    ret = mbedtls_ssl_ticket_setup(&tickets, locked_random, &drbg, MBEDTLS_CIPHER_AES_256_GCM, TICKET_LIFETIME_S);
#else
    ret = mbedtls_ssl_ticket_setup(&tickets, PSA_ALG_GCM, PSA_KEY_TYPE_AES, 256, TICKET_LIFETIME_S);
#endif
    if (ret != 0) {
        log_mbedtls("session tickets", ret);
        return -1;
    }
    mbedtls_ssl_conf_session_tickets_cb(&server_conf, mbedtls_ssl_ticket_write, mbedtls_ssl_ticket_parse, &tickets);
#endif
    server_ready = 1;
    return 0;
}

int hil_services_set_tls_credentials(const hil_tls_credentials_t *credentials)
{
    if (client_ready || server_ready) {
        hil_log(HIL_LOG_ERROR, TAG, "TLS credentials are set once, at start-up");
        return -1;
    }
    if (setup_rng() != 0) {
        return -1;
    }
    if (credentials->ca_pem != NULL && setup_client(credentials->ca_pem) != 0) {
        return -1;
    }
    if (credentials->server_cert_pem != NULL && credentials->server_key_pem != NULL &&
        setup_server(credentials->server_cert_pem, credentials->server_key_pem) != 0) {
        return -1;
    }
    return 0;
}

int hil_tls_server_ready(void)
{
    return server_ready;
}

int hil_tls_client_ready(void)
{
    return client_ready;
}

/* ---- the record layer's I/O on our socket ---------------------------------------------------- */

static int bio_send(void *ctx, const unsigned char *buf, size_t len)
{
    hil_tls_session_t *s = ctx;
    ssize_t n = send(s->fd, buf, len, 0); /* send(), never sendto(): the shim refuses sendto on TCP */
    if (n >= 0) {
        return (int)n;
    }
    if (hil_net_would_block(errno)) {
        return MBEDTLS_ERR_SSL_WANT_WRITE;
    }
    return errno == EPIPE || errno == ECONNRESET ? MBEDTLS_ERR_NET_CONN_RESET : MBEDTLS_ERR_NET_SEND_FAILED;
}

/* Waits with select() until the session's deadline; the timeout mbedTLS passes is not used. */
static int bio_recv_timeout(void *ctx, unsigned char *buf, size_t len, uint32_t unused_timeout)
{
    (void)unused_timeout;
    hil_tls_session_t *s = ctx;
    int32_t left = (int32_t)(s->deadline_ms - hil_time_ms());
    int ready = hil_net_wait_readable(s->fd, left > 0 ? (uint32_t)left : 0);
    if (ready == 0) {
        return MBEDTLS_ERR_SSL_TIMEOUT;
    }
    if (ready < 0) {
        return MBEDTLS_ERR_NET_RECV_FAILED;
    }
    ssize_t n = recv(s->fd, buf, len, 0);
    if (n >= 0) {
        return (int)n; /* 0: the peer closed */
    }
    if (hil_net_would_block(errno)) {
        return MBEDTLS_ERR_SSL_WANT_READ;
    }
    return errno == ECONNRESET ? MBEDTLS_ERR_NET_CONN_RESET : MBEDTLS_ERR_NET_RECV_FAILED;
}

/* Waits for the socket after WANT_READ/WANT_WRITE; -1 when the deadline passed. */
static int wait_for(hil_tls_session_t *s, int ret)
{
    int32_t left = (int32_t)(s->deadline_ms - hil_time_ms());
    if (left <= 0) {
        return -1;
    }
    if (ret == MBEDTLS_ERR_SSL_WANT_WRITE) {
        return hil_net_wait_writable(s->fd, (uint32_t)left) >= 0 ? 0 : -1;
    }
    return hil_net_wait_readable(s->fd, (uint32_t)left) >= 0 ? 0 : -1;
}

static int want_io(int ret)
{
    return ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE;
}

/* Whether ret is a TLS 1.3 ticket or early-data notice that is no error. */
static int is_notice(int ret)
{
#ifdef MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET
    if (ret == MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET) {
        return 1;
    }
#endif
    (void)ret;
    return 0;
}

static hil_tls_session_t *new_session(int fd, const mbedtls_ssl_config *conf)
{
    hil_tls_session_t *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return NULL;
    }
    mbedtls_ssl_init(&s->ssl);
    s->fd = fd;
    int ret = mbedtls_ssl_setup(&s->ssl, conf);
    if (ret != 0) {
        log_mbedtls("session setup", ret);
        mbedtls_ssl_free(&s->ssl);
        free(s);
        return NULL;
    }
    mbedtls_ssl_set_bio(&s->ssl, s, bio_send, NULL, bio_recv_timeout);
    return s;
}

static int handshake(hil_tls_session_t *s, uint32_t timeout_ms)
{
    s->deadline_ms = hil_time_ms() + timeout_ms;
    for (;;) {
        int ret = mbedtls_ssl_handshake(&s->ssl);
        if (ret == 0) {
            return 0;
        }
        if (!want_io(ret) || wait_for(s, ret) != 0) {
            return ret;
        }
    }
}

int hil_tls_accept(hil_conn_t *c, uint32_t timeout_ms)
{
    if (!server_ready) {
        return -1;
    }
    hil_tls_session_t *s = new_session(c->fd, &server_conf);
    if (s == NULL) {
        return -1;
    }
    int ret = handshake(s, timeout_ms);
    if (ret != 0) {
        /* A client offering nothing we accept (old version, RSA key exchange) is expected traffic. */
        log_mbedtls("server handshake", ret);
        hil_tls_free(s, 0);
        return -1;
    }
    c->tls = s;
    return 0;
}

/* At the leaf certificate, match an IPv4 literal host against the certificate's IP addresses
 * (mbedTLS 2.28 compares a host only with DNS names and the CN). */
static int verify_ip_san(void *ctx, mbedtls_x509_crt *crt, int depth, uint32_t *flags)
{
    const hil_tls_session_t *s = ctx;
    if (depth != 0 || !s->host_is_ip) {
        return 0;
    }
    int matched = 0;
    for (const mbedtls_x509_sequence *san = &crt->subject_alt_names; san != NULL; san = san->next) {
        const mbedtls_x509_buf *name = &san->buf;
        if (name->tag == (MBEDTLS_ASN1_CONTEXT_SPECIFIC | MBEDTLS_X509_SAN_IP_ADDRESS) && name->len == 4 &&
            memcmp(name->p, s->ip, 4) == 0) {
            matched = 1;
        }
    }
    if (matched) {
        *flags &= ~(uint32_t)MBEDTLS_X509_BADCERT_CN_MISMATCH;
    } else {
        *flags |= MBEDTLS_X509_BADCERT_CN_MISMATCH;
    }
    return 0;
}

int hil_tls_connect(hil_conn_t *c, const char *host, uint32_t timeout_ms, char *why, size_t why_len)
{
    if (!client_ready) {
        snprintf(why, why_len, "no CA configured");
        return -1;
    }
    hil_tls_session_t *s = new_session(c->fd, &client_conf);
    if (s == NULL) {
        snprintf(why, why_len, "out of memory");
        return -1;
    }
    struct in_addr ip;
    s->host_is_ip = inet_pton(AF_INET, host, &ip) == 1;
    memcpy(s->ip, &ip, sizeof s->ip);
    /* An IP address is not a server name (no SNI, RFC 6066 3): verify_ip_san checks it instead. */
    int ret = mbedtls_ssl_set_hostname(&s->ssl, s->host_is_ip ? NULL : host);
    mbedtls_ssl_set_verify(&s->ssl, verify_ip_san, s);
    if (ret == 0) {
        ret = handshake(s, timeout_ms);
    }
    if (ret != 0) {
        uint32_t flags = mbedtls_ssl_get_verify_result(&s->ssl);
        if (ret == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED && flags != 0) {
            char info[160] = "verification failed";
#if !defined(MBEDTLS_X509_REMOVE_INFO)
            mbedtls_x509_crt_verify_info(info, sizeof info, "", flags);
            info[strcspn(info, "\n")] = '\0';
#endif
            snprintf(why, why_len, "certificate: %s (flags 0x%x)", info, (unsigned)flags);
        } else {
            snprintf(why, why_len, "handshake failed (-0x%04x)", (unsigned)-ret);
        }
        hil_tls_free(s, 0);
        return -1;
    }
    c->tls = s;
    return 0;
}

int hil_tls_read(hil_tls_session_t *s, void *buf, size_t len, uint32_t timeout_ms)
{
    s->deadline_ms = hil_time_ms() + timeout_ms;
    for (;;) {
        int ret = mbedtls_ssl_read(&s->ssl, buf, len);
        if (ret > 0) {
            return ret;
        }
        if (ret == 0 || ret == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY || ret == MBEDTLS_ERR_NET_CONN_RESET) {
            return 0;
        }
        if (ret == MBEDTLS_ERR_SSL_TIMEOUT) {
            return HIL_CONN_TIMEOUT;
        }
        if (is_notice(ret)) {
            continue;
        }
        if (!want_io(ret)) {
            return -1;
        }
        if (wait_for(s, ret) != 0) {
            return HIL_CONN_TIMEOUT;
        }
    }
}

int hil_tls_write_all(hil_tls_session_t *s, const void *buf, size_t len, uint32_t timeout_ms)
{
    const unsigned char *p = buf;
    while (len > 0) {
        s->deadline_ms = hil_time_ms() + timeout_ms;
        int ret = mbedtls_ssl_write(&s->ssl, p, len);
        if (ret > 0) {
            p += ret;
            len -= (size_t)ret;
            continue;
        }
        /* After WANT_* mbedTLS must be called again with the same data. */
        if ((!want_io(ret) && !is_notice(ret)) || (want_io(ret) && wait_for(s, ret) != 0)) {
            return -1;
        }
    }
    return 0;
}

size_t hil_tls_buffered(const hil_tls_session_t *s)
{
    return mbedtls_ssl_get_bytes_avail(&s->ssl);
}

const char *hil_tls_version(const hil_tls_session_t *s)
{
    return mbedtls_ssl_get_version(&s->ssl);
}

void hil_tls_free(hil_tls_session_t *s, int notify)
{
    if (s == NULL) {
        return;
    }
    if (notify) {
        s->deadline_ms = hil_time_ms() + 1000u;
        int ret;
        while ((ret = mbedtls_ssl_close_notify(&s->ssl)) != 0 && want_io(ret) && wait_for(s, ret) == 0) {
        }
    }
    mbedtls_ssl_free(&s->ssl);
    free(s);
}

/* lib/repo's cryptography (crypt.c, key.c, storage-crypt.c): the key
 * hierarchy of an encrypted version 2 repository, keyed chunk ids, and the
 * envelope every sealed object and blob is stored in (docs/encryption.md,
 * docs/repository-format-v2.md "Encryption"). Internal to lib/repo and its
 * tests and fuzz targets.
 *
 * Errors: functions that parse bytes from the store return -1 with errno
 * and no message (the caller names the object): EKEYREJECTED when an
 * envelope fails (bad framing, truncated, altered, or sealed for another
 * identity: GCM cannot tell these apart and none may be trusted). The
 * others set the thread's error.
 */
#ifndef VMS_REPO_CRYPT_H
#define VMS_REPO_CRYPT_H

#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#define CRYPT_KEY_LEN 32
#define CRYPT_FP_LEN 16

/* Envelope: magic, version, 96-bit random nonce, AES-256-GCM ciphertext,
 * 128-bit tag. */
#define ENVELOPE_MAGIC "VMSE"
#define ENVELOPE_VERSION 1
#define ENVELOPE_NONCE_LEN 12
#define ENVELOPE_TAG_LEN 16
#define ENVELOPE_HEADER_LEN (4 + 1 + ENVELOPE_NONCE_LEN)
#define ENVELOPE_OVERHEAD (ENVELOPE_HEADER_LEN + ENVELOPE_TAG_LEN)   /* 33 */

/* An unlocked key: the master secret and what HKDF-SHA-256 derives from
 * it. Wipe with crypt_key_wipe. */
struct crypt_key {
  uint8_t master[CRYPT_KEY_LEN];
  uint8_t k_enc[CRYPT_KEY_LEN];         /* AES-256-GCM of every envelope */
  uint8_t k_id[CRYPT_KEY_LEN];          /* HMAC-SHA-256 chunk ids */
  uint8_t k_name[CRYPT_KEY_LEN];        /* hidden backup ids */
  uint8_t fingerprint[CRYPT_FP_LEN];    /* HMAC(K_id, "fingerprint")[0..16) */
  char fingerprint_hex[2 * CRYPT_FP_LEN + 1];
};

/* Fill everything from k->master. */
extern int crypt_key_derive (struct crypt_key *k);
extern void crypt_key_wipe (struct crypt_key *k);
/* HMAC-SHA-256(key, data). */
extern int crypt_mac (const uint8_t key[CRYPT_KEY_LEN], const void *data,
                      size_t len, uint8_t out[32]);
extern void crypt_hex (const uint8_t *b, size_t n, char *out);
/* Exactly 2n lower-case hex digits into n bytes: 0 or -1. */
extern int crypt_unhex (const char *s, uint8_t *out, size_t n);
/* The string member FIELD of O as exactly N bytes of lower-case hex. */
extern int crypt_unhex_member (json_object *o, const char *field,
                               uint8_t *out, size_t n);
/* The associated data of an object: its kind ("object", "blob",
 * "trailer"), the repository id and its name, into buf. The length, or 0
 * if it does not fit. */
extern size_t crypt_aad (char *buf, size_t size, const char *repo_id,
                         const char *kind, const char *name);
/* Seal n bytes of in into out (n + ENVELOPE_OVERHEAD bytes); in may be
 * out + ENVELOPE_HEADER_LEN (in place). */
extern int crypt_seal (const uint8_t key[CRYPT_KEY_LEN], const void *aad,
                       size_t aadlen, const void *in, size_t n, uint8_t *out);
/* Open an envelope of n bytes into out (n - ENVELOPE_OVERHEAD bytes):
 * 0, or -1 with errno EKEYREJECTED (out wiped). Untrusted input. */
extern int crypt_open (const uint8_t key[CRYPT_KEY_LEN], const void *aad,
                       size_t aadlen, const uint8_t *in, size_t n,
                       uint8_t *out);
/* HKDF-SHA-256 (RFC 5869) of ikm with salt and info: 32 bytes into out.
 * 0, or -1 with the error set. */
extern int crypt_hkdf (const uint8_t *ikm, size_t ikmlen, const uint8_t *salt,
                       size_t saltlen, const char *info,
                       uint8_t out[CRYPT_KEY_LEN]);
/* scrypt (RFC 7914) of a passphrase: N = 2^log2_n, r, p, outlen bytes
 * into out. 0, or -1 with the error set. */
extern int crypt_scrypt (const char *pass, size_t passlen,
                         const uint8_t *salt, size_t saltlen, unsigned log2_n,
                         unsigned r, unsigned p, uint8_t *out, size_t outlen);
/* Drop this thread's contexts (and the key schedules in them): after a
 * key that must not linger (a passphrase's scrypt key) was used. */
extern void crypt_forget (void);
/* Framing only (length, magic, version), for checks without the key:
 * 0, or -1 with EKEYREJECTED; crypt_envelope_problem says why (NULL when
 * the framing is sound). */
extern int crypt_envelope_check (const uint8_t *in, size_t n);
extern const char *crypt_envelope_problem (const uint8_t *in, size_t n);

/* ---- key.c: key files ---- */

/* A key file's contents (untrusted when read from a repository or another
 * host; tests/fuzz/repo/fuzz-keyfile.c). */
struct key_file {
  uint8_t fingerprint[CRYPT_FP_LEN];
  int64_t created;
  unsigned log2_n, r, p;                /* scrypt */
  uint8_t salt[32];
  int has_sealed;
  uint8_t sealed[CRYPT_KEY_LEN + ENVELOPE_OVERHEAD];
  int has_recovery;
  int x25519;                           /* the wrap's method: X25519, else RSA */
  uint8_t recovery_key_sha256[32];      /* of the master public key's DER */
  uint8_t ephemeral[32];                /* X25519: the wrap's own public key */
  uint8_t *wrapped;                     /* RSA-OAEP(SHA-256) of the master, or
                                         * X25519: its envelope (65 bytes) */
  size_t wrapped_len;
};
/* Parse key file text: 0, or -1 with EBADMSG and a message naming what
 * (what: "key file F"). */
extern int key_file_parse (const char *text, size_t len, const char *what,
                           struct key_file *kf);
extern char *key_file_format (const struct key_file *kf);
extern void key_file_clear (struct key_file *kf);
/* Paper text -> master secret and the fingerprint it printed: 0, or -1
 * with EBADMSG naming the line (untrusted: typed by a person). */
extern int key_paper_parse (const char *text, uint8_t master[CRYPT_KEY_LEN],
                            uint8_t fingerprint[CRYPT_FP_LEN]);

/* The unlocked key of fingerprint fp (32 hex digits): from this process's
 * cache, else its key file in the key directory opened with a passphrase.
 * Borrowed: valid until the process ends. NULL with the error set (ENOKEY
 * when there is no key file). */
extern const struct crypt_key *key_unlock (const char *fp);
/* The read end of a pipe that holds unlocked key fp for a child
 * (vms_repo_key_handoff, vms_key_receive): O_CLOEXEC, or -1 with the
 * error set. */
extern int key_handoff_fd (const char *fp);
/* A new key (random secret), its file written and the key cached. */
extern const struct crypt_key *key_new (const char *master_public_key);
/* Remove key fp's file (a key made for a repository whose creation then
 * failed); the error state is kept. */
extern void key_discard (const char *fp);
/* The recovery-only form of key fp's file (no passphrase-sealed secret),
 * for keys/<fp> of a repository, or NULL (and no error) if it has no
 * recovery wrap. */
extern char *key_recovery_copy (const char *fp);

#endif /* VMS_REPO_CRYPT_H */

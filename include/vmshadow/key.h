/* vmshadow — keys of encrypted repositories (R28; docs/encryption.md).
 *
 * A key is a 256-bit master secret. Its key file, <key dir>/<fingerprint>.key
 * (VMSHADOW_KEY_DIR, default /etc/vmshadow/keys; 0600 in a 0700
 * directory), holds it sealed with AES-256-GCM under a key that scrypt
 * derives from a passphrase, and optionally also wrapped with an
 * organisation's X25519 or RSA public key (X25519 with HKDF-SHA-256 and
 * AES-256-GCM, or RSA-OAEP with SHA-256) for recovery without
 * the host. The fingerprint (32 hex digits) names a key; a repository's
 * config names the fingerprint of its key.
 *
 * Passphrases come from the function set with vms_set_passphrase_fn, else
 * from the environment: VMSHADOW_PASSPHRASE (to unlock; also a new one),
 * VMSHADOW_NEW_PASSPHRASE (a new one, when set). They are never stored,
 * logged or passed in argv by vmshadow.
 */
#ifndef VMSHADOW_KEY_H
#define VMSHADOW_KEY_H

#include "vmshadow/api.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VMS_KEY_DIR_ENV "VMSHADOW_KEY_DIR"
#define VMS_KEY_DEFAULT_DIR "/etc/vmshadow/keys"
#define VMS_PASSPHRASE_ENV "VMSHADOW_PASSPHRASE"
#define VMS_NEW_PASSPHRASE_ENV "VMSHADOW_NEW_PASSPHRASE"
/* Longest passphrase, bytes, NUL excluded. */
#define VMS_PASSPHRASE_MAX 1023
/* Shortest new passphrase, bytes. */
#define VMS_PASSPHRASE_MIN 8

enum vms_passphrase_purpose {
  VMS_PASSPHRASE_UNLOCK = 0,    /* the passphrase of an existing key file */
  VMS_PASSPHRASE_NEW = 1,       /* a new passphrase (ask twice at a terminal) */
};
/* Write a NUL-terminated passphrase for the key fingerprint into buf (size
 * bytes): 0, or -1 with the error set. */
typedef int (*vms_passphrase_fn) (void *opaque, int purpose,
                                  const char *fingerprint, char *buf,
                                  size_t size);
/* How this process gets passphrases (NULL: the environment only). */
extern VMS_API void vms_set_passphrase_fn (vms_passphrase_fn fn, void *opaque);

/* Make a new key and its key file (a new passphrase is asked).
 * master_public_key: a PEM file with an X25519 public key or an RSA one
 * (2048 bits or more) that also wraps the secret, or NULL. fingerprint gets 32 hex digits. */
extern VMS_API int vms_key_create (const char *master_public_key,
                                   char fingerprint[33]);

struct vms_key_info {
  char fingerprint[33];
  int64_t created;              /* Unix seconds */
  unsigned scrypt_log2_n, scrypt_r, scrypt_p;
  int has_passphrase;           /* the secret is sealed with a passphrase */
  int has_recovery;             /* ... and wrapped for a master key */
  char recovery_key_sha256[65]; /* SHA-256 of the master public key (DER) */
  char recovery_method[32];     /* "rsa-oaep-sha256" or
                                 * "x25519-hkdf-sha256-aes256gcm" */
};
/* What the key file of fingerprint says, without opening it. */
extern VMS_API int vms_key_info (const char *fingerprint,
                                 struct vms_key_info *info);
/* The key file's path for fingerprint, malloc'd. */
extern VMS_API char *vms_key_path (const char *fingerprint);
/* Asks the passphrase, then a new one; replaces the key file atomically. */
extern VMS_API int vms_key_change_passphrase (const char *fingerprint);
/* The key in printable form: the secret in lines with a checksum each and
 * the fingerprint. Asks the passphrase. Caller frees (and should wipe). */
extern VMS_API char *vms_key_export_paper (const char *fingerprint);
/* A key from its paper form (as vms_key_export_paper printed it; spaces
 * and case do not matter, a mistyped line is named): its key file is
 * written under a new passphrase. */
extern VMS_API int vms_key_import_paper (const char *text, char fingerprint[33]);
/* A key file's text (another host's copy, or a repository's keys/<fp>).
 * master_private_key NULL: the file is checked and installed as it is
 * (it must hold the passphrase-sealed secret). Else a PEM file of the
 * X25519 or RSA private key of its recovery wrap: the secret is recovered and sealed
 * under a new passphrase. */
extern VMS_API int vms_key_import (const char *text, size_t len,
                                   const char *master_private_key,
                                   char fingerprint[33]);
/* Take a key handed over on fd by the process that started this one
 * (vms_repo_key_handoff): read to its end, checked against its
 * fingerprint, kept in this process's memory (vms_repo_open then needs no
 * passphrase); the bytes read are wiped. fd is not closed. */
extern VMS_API int vms_key_receive (int fd);

#ifdef __cplusplus
}
#endif
#endif /* VMSHADOW_KEY_H */

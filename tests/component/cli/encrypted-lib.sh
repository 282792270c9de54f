# Sourced by the repository tests that meson also runs on an encrypted
# repository (issue 13, R28): with VMSHADOW_TEST_ENCRYPTED=1 in the
# environment, the test's repository ($VMSHADOW_REPO) is made encrypted
# before the test's first command, with a key in $tmp/keys and a test
# passphrase (scrypt N=2^14 to stay fast; key files made by users get
# 2^17). encrypted_init_args is what "vmshadow init" gets added.
# repo_cat (and, with VMSHADOW_TEST_BACKEND=rados, the repository on RADOS).
. "$(dirname "${BASH_SOURCE[0]}")/repo-backend-lib.sh"
encrypted_init_args=()
if [ "${VMSHADOW_TEST_ENCRYPTED:-}" = 1 ]; then
  export VMSHADOW_KEY_DIR=$tmp/keys VMSHADOW_PASSPHRASE=test-passphrase-13
  export VMSHADOW_SCRYPT_LOG2N=14
  encrypted_init_args=(--encrypt --visible-backup-ids)
fi
encrypted_repo_if_asked () {
  if [ "${VMSHADOW_TEST_ENCRYPTED:-}" = 1 ]; then
    "$vmshadow" init "${encrypted_init_args[@]}" > "$tmp/encrypted-init.out" 2>&1 ||
      fail "init --encrypt: $(cat "$tmp/encrypted-init.out")"
    repo_cat config | grep -q '"encryption": { "cipher": "aes-256-gcm"' ||
      fail "the repository is not encrypted: $(repo_cat config)"
  fi
}

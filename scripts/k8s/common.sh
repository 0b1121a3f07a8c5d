# Helpers that control-plane.sh and node.sh share; sourced by both. The caller sets `me` (its
# name, for messages) before sourcing.

# cert <pki-dir> <name> <subject> [extensions]: a key and a certificate signed by <pki-dir>/ca.*.
cert() {
  local pki=$1 name=$2 subject=$3 ext=${4:-}
  openssl req -new -newkey rsa:2048 -nodes -keyout "$pki/$name.key" -subj "$subject" -out "$pki/$name.csr" 2>/dev/null
  if [ -n "$ext" ]; then
    printf '%s\n' "$ext" > "$pki/$name.ext"
    openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
      -days 2 -extfile "$pki/$name.ext" -out "$pki/$name.crt" 2>/dev/null
  else
    openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
      -days 2 -out "$pki/$name.crt" 2>/dev/null
  fi
}

# wait_for <what> <log> <seconds> <command...>: polls the command once a second; on timeout says
# so with the end of <log> and fails.
wait_for() {
  local what=$1 log=$2 seconds=$3; shift 3
  local i
  for i in $(seq "$seconds"); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  echo "$me: expected $what within ${seconds}s, it was not; last lines of $log:" >&2
  tail -n 30 "$log" >&2
  return 1
}

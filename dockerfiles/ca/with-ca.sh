#!/bin/sh
# with-ca.sh COMMAND [ARG...]: run COMMAND trusting the extra CA certificates beside this script (*.crt,
# e.g. a TLS-intercepting proxy's) as well as the system's. One bundle (the system's, then the extra ones)
# is exported as PIP_CERT, SSL_CERT_FILE, REQUESTS_CA_BUNDLE, NODE_EXTRA_CA_CERTS and CURL_CA_BUNDLE, which
# pip, Python's ssl, requests, npm and curl read, and given to apt through APT_CONFIG (Acquire::https::CAInfo).
# Without extra certificates COMMAND runs unchanged. Every dockerfile runs its
# download steps through it (COPY dockerfiles/ca/ /tmp/odstack-ca/, then RUN /tmp/odstack-ca/with-ca.sh ...);
# the image's own trust store is never changed.
set -eu
dir=$(dirname "$0")
bundle="$dir/bundle.pem"
count=0
for crt in "$dir"/*.crt; do
    [ -f "$crt" ] || continue
    if [ "$count" = 0 ]; then
        : > "$bundle"
        if [ -f /etc/ssl/certs/ca-certificates.crt ]; then cat /etc/ssl/certs/ca-certificates.crt >> "$bundle"; fi
    fi
    cat "$crt" >> "$bundle"
    count=$((count + 1))
done
if [ "$count" -gt 0 ]; then
    echo "with-ca: trusting $count extra CA file(s) from dockerfiles/ca/" >&2
    echo "Acquire::https::CAInfo \"$bundle\";" > "$dir/apt.conf"
    export PIP_CERT="$bundle" SSL_CERT_FILE="$bundle" REQUESTS_CA_BUNDLE="$bundle" NODE_EXTRA_CA_CERTS="$bundle" \
        CURL_CA_BUNDLE="$bundle" APT_CONFIG="$dir/apt.conf"
fi
exec "$@"

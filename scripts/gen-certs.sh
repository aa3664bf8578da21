#!/usr/bin/env bash
# Development certificates for mutual TLS: a CA, one certificate the nodes share (for
# serving and for dialling each other) and one for clients. Not for production: keep
# a real CA's key offline, and give each node its own certificate.
#
#   scripts/gen-certs.sh DIR [SAN ...]     e.g. scripts/gen-certs.sh ./certs IP:127.0.0.1 DNS:localhost
#
# The node certificate's subject alternative names must cover every address the nodes
# and clients dial (default: IP:127.0.0.1 and DNS:localhost). Then add to the config:
#   "tls": { "caFile": "certs/ca.pem", "certFile": "certs/node.pem", "keyFile": "certs/node-key.pem" }
# and give clients --tls-ca certs/ca.pem --tls-cert certs/client.pem --tls-key certs/client-key.pem.
set -euo pipefail

if [[ $# -lt 1 || "$1" == -* ]]; then
  echo "usage: $0 DIR [SAN ...]   (SAN like IP:127.0.0.1 or DNS:node1.example)" >&2
  exit 2
fi
command -v openssl >/dev/null || { echo "$0: openssl is needed (apt-get install openssl)" >&2; exit 1; }

dir=$1
shift
sans=("$@")
if [[ ${#sans[@]} -eq 0 ]]; then sans=(IP:127.0.0.1 DNS:localhost); fi
san_list=$(IFS=,; echo "${sans[*]}")
days=825

mkdir -p "$dir"
cd "$dir"

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out "$1" 2>/dev/null; }

key ca-key.pem
openssl req -x509 -new -key ca-key.pem -sha256 -days "$days" -subj "/CN=dlm development CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out ca.pem

issue() { # name, common name, extended key usage, [subjectAltName]
  local name=$1 cn=$2 eku=$3 san=${4:-}
  key "$name-key.pem"
  openssl req -new -key "$name-key.pem" -subj "/CN=$cn" -out "$name.csr"
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature"
    echo "extendedKeyUsage=$eku"
    if [[ -n "$san" ]]; then echo "subjectAltName=$san"; fi
  } > "$name.ext"
  openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca-key.pem -CAcreateserial -sha256 \
    -days "$days" -extfile "$name.ext" -out "$name.pem" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}

# Nodes serve clients and peers, and dial peers: both usages.
issue node "dlm node" serverAuth,clientAuth "$san_list"
issue client "dlm client" clientAuth
rm -f ca.srl
chmod 600 ./*-key.pem
echo "wrote $(pwd)/{ca,node,client}.pem and their keys (node SANs: $san_list)"

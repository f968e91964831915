#!/bin/sh
# Lays out the container's whole filesystem in DEST: the server binary, exactly the shared
# libraries it links (as ldd resolves them on this system, the one that built it), the CA
# certificates, and the files a process without a distribution still reads (/etc/passwd for
# its user, /etc/nsswitch.conf for name lookups). Nothing else: no shell, no package manager.
#
# The Containerfile runs it in its builder stage; the tests run it on the machine that built
# the binary, with the same effect. Usage: rootfs.sh BINARY DEST
set -eu

binary=${1:?usage: rootfs.sh BINARY DEST}
dest=${2:?usage: rootfs.sh BINARY DEST}
# The user the server runs as: numeric, so that a cluster can check it is not root
# (runAsNonRoot) without reading the image's /etc/passwd. 65532 is the "nonroot" of
# distroless images, which policies commonly expect.
uid=65532

fail() { echo "rootfs.sh: $*" >&2; exit 1; }
test -x "$binary" || fail "$binary is not an executable"
command -v ldd >/dev/null || fail "ldd is missing (Debian: libc-bin)"
command -v strip >/dev/null || fail "strip is missing (Debian: binutils)"
certs=/etc/ssl/certs/ca-certificates.crt
test -s "$certs" || fail "$certs is missing (Debian: ca-certificates)"
if ldd "$binary" | grep -q 'not found'; then
    ldd "$binary" | grep 'not found' >&2
    fail "$binary links libraries this system lacks (above)"
fi
# DEST is emptied first: never the root of this system.
test "$(cd "$dest" 2>/dev/null && pwd -P)" != / || fail "DEST is /"

rm -rf "$dest"
mkdir -p "$dest/usr/local/bin" "$dest/etc/ssl/certs"
# Without the symbol table: a quarter of the binary, needed only to name the functions of a
# backtrace (a panic's message and location stay).
strip -o "$dest/usr/local/bin/greeter-server" "$binary"

# Every library, and the dynamic loader, at the path the binary asks for: ldd prints
# "libssl.so.3 => /lib/x86_64-linux-gnu/libssl.so.3 (0x…)" for a library and
# "/lib64/ld-linux-x86-64.so.2 (0x…)" for the loader. cp -L copies the file a symlink names.
libs=$(ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
test -n "$libs" || fail "ldd found no libraries in $binary (static? not an ELF for this system?)"
for lib in $libs; do
    mkdir -p "$dest$(dirname "$lib")"
    cp -L "$lib" "$dest$lib"
done
# C-core's TLS (through OpenSSL) trusts the system's roots, found at Debian's path.
cp -L "$certs" "$dest$certs"

cat > "$dest/etc/passwd" <<EOF
root:x:0:0:root:/root:/sbin/nologin
greeter:x:$uid:$uid:greeter:/nonexistent:/sbin/nologin
EOF
cat > "$dest/etc/group" <<EOF
root:x:0:
greeter:x:$uid:
EOF
# glibc's default without this file asks DNS before /etc/hosts, even for "localhost".
echo 'hosts: files dns' > "$dest/etc/nsswitch.conf"

echo "rootfs.sh: $(echo "$libs" | wc -w) libraries; $(du -sk "$dest" | cut -f1) KiB in $dest" >&2

#!/usr/bin/env bash
# nginx-rootfs.sh DIR: fills DIR with what Dockerfile.nginx copies into a
# scratch image: this machine's nginx binary, every shared library ldd says
# it loads (the dynamic loader included) at the path ldd names, the
# directories above them, and /tmp (1777). It fails, naming what is
# missing, when nginx or a library is not there.
set -euo pipefail
out=${1:?usage: nginx-rootfs.sh DIR}
nginx=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
[ -x "$nginx" ] || { echo "nginx-rootfs.sh: no nginx at $nginx (apt-get install nginx, or make deps as root)" >&2; exit 1; }
command -v ldd >/dev/null || { echo "nginx-rootfs.sh: ldd is not in PATH (apt-get install libc-bin)" >&2; exit 1; }
rm -rf "$out" && mkdir -p "$out/tmp" "$out/usr/sbin" "$out/etc/nginx"
chmod 1777 "$out/tmp"
cp -L "$nginx" "$out/usr/sbin/nginx"
libs=$(ldd "$nginx") || { echo "nginx-rootfs.sh: ldd $nginx failed: $libs" >&2; exit 1; }
if grep -q "not found" <<<"$libs"; then
	echo "nginx-rootfs.sh: libraries of $nginx missing on this machine:" >&2; grep "not found" <<<"$libs" >&2; exit 1
fi
# "libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x…)" or "/lib64/ld-linux-x86-64.so.2 (0x…)"
for lib in $(sed -n -e 's/.*=> \(\/[^ ]*\) .*/\1/p' -e 's/^[[:space:]]*\(\/[^ ]*\) .*/\1/p' <<<"$libs"); do
	mkdir -p "$out$(dirname "$lib")"
	cp -L "$lib" "$out$lib"
done

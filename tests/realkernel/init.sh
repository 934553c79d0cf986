#!/bin/busybox sh
# /init of the real-kernel tier's initramfs: mount the usual file systems, load the modules
# shipped in /lib/modules (qemu_fw_cfg on Debian's cloud kernels, so that VMCOREINFO reaches
# QEMU), start the workload with its output on the serial console, and offer a command shell on
# the second serial port (/dev/ttyS1) for the host harness.
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t debugfs debugfs /sys/kernel/debug
mount -t tmpfs tmp /tmp
for m in $(cat /lib/modules/order 2>/dev/null); do
    insmod "/lib/modules/$m" || echo "PINLOG insmod $m failed"
done
[ -e /sys/firmware/qemu_fw_cfg ] || echo "PINLOG no /sys/firmware/qemu_fw_cfg: VMCOREINFO will be missing"
echo "PINLOG uname $(uname -r) thp $(cat /sys/kernel/mm/transparent_hugepage/enabled)"
/pinwork $(cat /pinwork.args) </dev/null >/dev/console 2>&1 &
# command shell for the host: one line in, output and an end marker out
if [ -e /dev/ttyS1 ]; then
    stty -F /dev/ttyS1 raw -echo 2>/dev/null
    setsid sh -c 'exec sh </dev/ttyS1 >/dev/ttyS1 2>&1' &
fi
while :; do sleep 3600; done

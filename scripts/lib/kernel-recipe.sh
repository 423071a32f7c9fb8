# shellcheck shell=bash
#
# The build recipe for swiftvm guest kernels: everything that decides what
# ends up in the built kernel image, and nothing else.
#
# scripts/build-kernel.sh sources this file and hashes its contents into the
# cache key, so editing anything here invalidates previously cached kernels,
# while changes to the driver script's option parsing, messages or cache
# handling do not. Keep it that way: logic that can change the output belongs
# here, logic that cannot belongs in the driver.
#
# Functions return non-zero on failure and never exit; they print nothing on
# stdout except where documented.

# kb_arch_setup ARCH
# Sets the per-architecture build parameters:
#   KB_MAKE_ARCH       value of ARCH= for kbuild
#   KB_CROSS_COMPILE   value of CROSS_COMPILE= (empty for a native build)
#   KB_MAKE_TARGET     the make target that produces the artifact
#   KB_ARTIFACT        the artifact's path relative to the build directory
#   KB_ARTIFACT_NAME   the file name it is published under in the cache
# Returns 1 for an unknown architecture.
# shellcheck disable=SC2034  # the KB_* variables are read by the caller
kb_arch_setup() {
    case "$1" in
        x86_64)
            KB_MAKE_ARCH=x86_64
            KB_CROSS_COMPILE=
            KB_MAKE_TARGET=vmlinux
            KB_ARTIFACT=vmlinux
            KB_ARTIFACT_NAME=vmlinux
            ;;
        aarch64)
            # The VMM boots the raw Image with its arm64 boot header (and
            # PE/EFI-stub header), not the ELF vmlinux. Cross-compiled
            # unless the host is arm64 itself.
            KB_MAKE_ARCH=arm64
            if [[ $(uname -m) == aarch64 ]]; then
                KB_CROSS_COMPILE=
            else
                KB_CROSS_COMPILE=aarch64-linux-gnu-
            fi
            KB_MAKE_TARGET=Image
            KB_ARTIFACT=arch/arm64/boot/Image
            KB_ARTIFACT_NAME=Image
            ;;
        *)
            return 1
            ;;
    esac
}

# kb_make SRC BUILD ARGS...
# Runs kbuild out of tree: sources in SRC, all output in BUILD. The build
# user/host/timestamp are pinned so that identical inputs give an identical
# "Linux version ..." banner regardless of who built the kernel, and when.
kb_make() {
    local src=$1 build=$2
    shift 2
    make -C "$src" O="$build" \
        ARCH="$KB_MAKE_ARCH" \
        ${KB_CROSS_COMPILE:+CROSS_COMPILE="$KB_CROSS_COMPILE"} \
        KBUILD_BUILD_USER=swiftvm \
        KBUILD_BUILD_HOST=swiftvm \
        KBUILD_BUILD_TIMESTAMP='Thu Jan  1 00:00:00 UTC 1970' \
        "$@"
}

# kb_configure SRC BUILD FRAGMENT
# Produces BUILD/.config: allnoconfig with FRAGMENT forced on top, then
# olddefconfig to settle every remaining symbol to its default.
kb_configure() {
    local src=$1 build=$2 fragment=$3
    kb_make "$src" "$build" allnoconfig KCONFIG_ALLCONFIG="$fragment" &&
        kb_make "$src" "$build" olddefconfig
}

# kb_symbol_exists SRC SYMBOL
# True if some Kconfig file in SRC defines SYMBOL (without the CONFIG_ prefix).
kb_symbol_exists() {
    grep -rqE --include='Kconfig*' "^[[:space:]]*(menu)?config[[:space:]]+$2[[:space:]]*\$" "$1"
}

# kb_verify_config SRC FRAGMENT DOTCONFIG
# Checks that every assignment in FRAGMENT holds in DOTCONFIG:
#   CONFIG_X=value        must appear verbatim;
#   # CONFIG_X is not set must appear verbatim, or X must be absent from
#                         DOTCONFIG (its dependencies are off, so it is off
#                         too) while being a real symbol of this kernel.
# Prints one line per option that did not stick (on stdout) and returns 1 if
# there was any.
kb_verify_config() {
    local src=$1 fragment=$2 dotconfig=$3
    local line sym actual bad=0
    while IFS= read -r line; do
        if [[ $line =~ ^(CONFIG_[A-Za-z0-9_]+)=(.*)$ ]]; then
            sym=${BASH_REMATCH[1]}
            grep -qxF -- "$line" "$dotconfig" && continue
            # shellcheck disable=SC1087  # "[= ]" is a regex class, not an index
            actual=$(grep -E "^(# )?$sym[= ]" "$dotconfig" || true)
            if [[ -n $actual ]]; then
                echo "  $line  ->  got: $actual"
            elif kb_symbol_exists "$src" "${sym#CONFIG_}"; then
                echo "  $line  ->  absent (a dependency is not enabled)"
            else
                echo "  $line  ->  no such Kconfig symbol in this kernel"
            fi
            bad=1
        elif [[ $line =~ ^#\ (CONFIG_[A-Za-z0-9_]+)\ is\ not\ set$ ]]; then
            sym=${BASH_REMATCH[1]}
            grep -qxF -- "$line" "$dotconfig" && continue
            actual=$(grep -E "^$sym=" "$dotconfig" || true)
            if [[ -n $actual ]]; then
                echo "  $line  ->  got: $actual (selected or forced by another option)"
                bad=1
            elif ! kb_symbol_exists "$src" "${sym#CONFIG_}"; then
                echo "  $line  ->  no such Kconfig symbol in this kernel"
                bad=1
            fi
        fi
    done <"$fragment"
    return "$bad"
}

# kb_compile SRC BUILD JOBS
# Builds the artifact for the architecture set up by kb_arch_setup.
kb_compile() {
    kb_make "$1" "$2" -j"$3" "$KB_MAKE_TARGET"
}

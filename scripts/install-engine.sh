#!/usr/bin/env bash
# Install the spreadsheet engine the tests use as their oracle: LibreOffice headless
# (Calc without a GUI), its Python-UNO bridge, CJK fonts for the paper layouts, and
# poppler-utils (pdftoppm/pdfinfo) to look at the printed forms. Debian/Ubuntu, as root
# or with sudo. Does nothing when everything is already there.
set -euo pipefail
need=()
command -v soffice >/dev/null 2>&1 || need+=(libreoffice-calc-nogui)
/usr/bin/python3 -c 'import uno' >/dev/null 2>&1 || need+=(python3-uno)
fc-list 2>/dev/null | grep -qi 'Noto Sans CJK' || need+=(fonts-noto-cjk)
command -v pdftoppm >/dev/null 2>&1 || need+=(poppler-utils)
if [ ${#need[@]} -eq 0 ]; then
  echo "LibreOffice engine already installed"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
  libreoffice-calc-nogui python3-uno fonts-noto-cjk poppler-utils >/dev/null
echo "installed: ${need[*]}"

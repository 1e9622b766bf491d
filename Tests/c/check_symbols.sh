#!/bin/sh
# Every pk_ function the header declares is exported by the library, and nothing else is.
# (@c @implementation checks each Swift signature, but not that a declaration has one.)
header=$1 lib=$2
declared=$(grep -o -E '\bpk_[a-z0-9_]+\(' "$header" | tr -d '(' | sort -u)
exported=$(readelf --dyn-syms -W "$lib" | awk '$5 ~ /GLOBAL|WEAK/ && $7 != "UND" {print $8}' | sed 's/@.*//' | sort -u)
status=0
for name in $declared; do
    echo "$exported" | grep -qx "$name" || { echo "declared in the header but not exported: $name"; status=1; }
done
for name in $exported; do
    echo "$declared" | grep -qx "$name" || { echo "exported but not declared in the header: $name"; status=1; }
done
[ $status -eq 0 ] && echo "symbols: $(echo "$declared" | wc -l) pk_ functions declared and exported, nothing else exported"
exit $status

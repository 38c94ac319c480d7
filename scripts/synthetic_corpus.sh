#!/usr/bin/env bash
# Writes a small synthetic play-like corpus to the file given (default data/synthetic.txt), for when no real
# corpus can be had (no path given, no network). Deterministic: the same file every time.
set -euo pipefail
out="${1:-data/synthetic.txt}"
mkdir -p "$(dirname "$out")"
awk 'BEGIN {
    srand(7)
    split("ANNA BORIS CLARA DMITRI ELENA", speakers, " ")
    split("the sea,the king,my lord,this night,the garden,our house,the letter,her song,his sword,the bells", things, ",")
    split("loves,fears,remembers,forgets,keeps,breaks,finds,hides", verbs, ",")
    split("softly,tonight,again,at dawn,in silence,for ever", ways, ",")
    for (scene = 1; scene <= 400; scene++) {
        printf "SCENE %d.\n\n", scene
        for (line = 0; line < 12; line++) {
            s = speakers[int(rand() * 5) + 1]
            printf "%s:\nWho %s %s %s? She %s %s.\n\n", s, verbs[int(rand() * 8) + 1], things[int(rand() * 10) + 1],
                ways[int(rand() * 6) + 1], verbs[int(rand() * 8) + 1], things[int(rand() * 10) + 1]
        }
    }
}' > "$out"
echo "wrote synthetic corpus $out ($(wc -c < "$out") bytes)" >&2

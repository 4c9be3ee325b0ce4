# The generated slides the GPU benchmarks share, made once into $work (sourced, not run):
# s40k, 40,000² at 0.5 µm/px; peer, 40,960² at 0.25 µm/px (the peer pipeline's slide).
# Needs $bin (a flashslide binary) and $work.
synth() { # name seed width height mpp
    [ -f "$work/$1/synth-s$2-000.svs" ] || "$bin" synth --out "$work/$1" --seed "$2" --width "$3" \
        --height "$4" --mpp "$5" --quiet
}
benchmark_slides() {
    synth s40k 40 40000 40000 0.5
    synth peer 41 40960 40960 0.25
}

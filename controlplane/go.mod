module flotilla.dev/controlplane

go 1.26.7

replace flotilla.dev/gen => ../gen

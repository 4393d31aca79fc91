module flotilla.dev/e2e

go 1.26.7

replace flotilla.dev/gen => ../gen

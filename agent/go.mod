module flotilla.dev/agent

go 1.26.7

replace flotilla.dev/gen => ../gen

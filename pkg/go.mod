module flotilla.dev/pkg

go 1.26.7

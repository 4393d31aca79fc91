package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"flotilla.dev/controlplane/internal/backup"
	"flotilla.dev/controlplane/internal/config"
)

// runBackup is `flotilla-controlplane backup --out FILE [--force]` with
// every setting of the control plane (config file, environment, flags), so
// that it finds the data directory and store the running one uses.
func runBackup(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var out string
	var force bool
	cfg, _, err := config.LoadCommand("flotilla-controlplane backup", args, getenv, stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&out, "out", "", "archive to write (mode 0600); required")
		fs.BoolVar(&force, "force", false, "replace an existing archive")
	})
	if err != nil {
		return err
	}
	if out == "" {
		return errors.New("backup: --out: required")
	}
	m, err := backup.Create(ctx, backup.CreateConfig{Config: cfg, Out: out, Force: force, Version: version})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s (format %d, control plane %s, created %s)\n", out, m.FormatVersion, m.ControlPlaneVersion, m.CreatedAt.Format(time.RFC3339))
	printFiles(stdout, m)
	if m.StoreDriver == config.DriverPostgres {
		fmt.Fprintf(stdout, `
The store is in PostgreSQL: this archive holds the CA and identity files only.
Dump the database as well, with the same pg_dump version as the server or newer:
  pg_dump --format=custom --file=flotilla-db.dump %s
Keep both files together; restore needs both.
`, shellQuote(cfg.Store.RedactedDSN()))
	}
	return nil
}

// runRestore is `flotilla-controlplane restore --from FILE --data-dir DIR
// [--force]`.
func runRestore(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var from string
	var force bool
	cfg, _, err := config.LoadCommand("flotilla-controlplane restore", args, getenv, stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&from, "from", "", "archive written by `flotilla-controlplane backup`; required")
		fs.BoolVar(&force, "force", false, "restore into a data directory that is not empty, replacing the files the archive holds")
	})
	if err != nil {
		return err
	}
	if from == "" {
		return errors.New("restore: --from: required")
	}
	storePath := cfg.Store.Path
	m, err := backup.Restore(ctx, backup.RestoreConfig{From: from, DataDir: cfg.DataDir, StorePath: storePath, Force: force})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "restored %s into %s (control plane %s, created %s)\n", from, cfg.DataDir, m.ControlPlaneVersion, m.CreatedAt.Format(time.RFC3339))
	printFiles(stdout, m)
	if cfg.TLS.CACertFile != "" {
		fmt.Fprintf(stdout, "\nNote: tls.ca_cert_file is set (%s); the restored CA is in %s. Point the setting at it or copy it there.\n", cfg.TLS.CACertFile, cfg.DataDir)
	}
	if m.StoreDriver == config.DriverPostgres {
		fmt.Fprint(stdout, `
The archive was taken with the store in PostgreSQL: restore the database from its pg_dump before starting:
  pg_restore --clean --if-exists --no-owner --dbname='<DSN>' flotilla-db.dump
then start the control plane with store.driver postgres and the same address.
`)
		return nil
	}
	fmt.Fprintf(stdout, "\nStart the control plane with -data-dir %s on the address the agents dial; they reconnect under their own IDs.\n", cfg.DataDir)
	return nil
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func printFiles(w io.Writer, m backup.Manifest) {
	for _, f := range m.Files {
		extra := ""
		if f.Name == backup.StoreFile {
			extra = fmt.Sprintf(" (schema version %d)", m.SchemaVersion)
		}
		fmt.Fprintf(w, "  %-12s %10d bytes  sha256 %s%s\n", f.Name, f.Size, f.SHA256, extra)
	}
}

package config

import (
	"fmt"
	"os"
	"strings"
)

// Flags are the connection flags given on the command line; empty fields
// were not given.
type Flags struct {
	// Context, Address, CAFile, TokenFile, CertFile and KeyFile are
	// --context, --address, --ca, --token-file, --cert and --key.
	Context   string
	Address   string
	CAFile    string
	TokenFile string
	CertFile  string
	KeyFile   string
}

// Connection is where and as whom to connect, resolved.
type Connection struct {
	// Context is the name of the context used, "" for none.
	Context string
	// Address is the control plane's host:port.
	Address string
	// CAFile is the CA's PEM file; empty: the system's roots.
	CAFile string
	// ServerName is the name checked in the server's certificate; empty:
	// the address's host.
	ServerName string
	// Token is the bearer token; empty with a certificate.
	Token string
	// CertFile and KeyFile are the operator certificate and its key.
	CertFile string
	KeyFile  string
}

// Resolve picks every setting from the flags, then the environment, then
// the context (named by --context, FLOTILLA_CONTEXT or the file's current
// context). A context that is named but not defined is an error; a token
// and a certificate together are refused, as the server refuses them.
func Resolve(fl Flags, f File, getenv func(string) string) (Connection, error) {
	name := first(fl.Context, getenv(EnvContext), f.CurrentContext)
	var ctx Context
	if name != "" {
		c, ok := f.Contexts[name]
		if !ok {
			return Connection{}, unknownContext(name, f)
		}
		ctx = c
	}
	c := Connection{
		Context:    name,
		Address:    first(fl.Address, getenv(EnvAddress), ctx.Address, DefaultAddress),
		CAFile:     expandHome(first(fl.CAFile, getenv(EnvCA), ctx.CAFile)),
		ServerName: ctx.ServerName,
	}
	if err := c.credential(fl, ctx, getenv); err != nil {
		return Connection{}, err
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return Connection{}, fmt.Errorf("cert and key: give both the operator certificate and its key, or neither")
	}
	return c, nil
}

// bothCredentials is the error for a token and a certificate together,
// which the server would refuse.
var bothCredentials = "credentials: %s give both a token and an operator certificate; use one (the server refuses calls carrying both)"

// credential picks one credential: the flags' (a token file or a
// certificate), then FLOTILLA_TOKEN, then the context's.
func (c *Connection) credential(fl Flags, ctx Context, getenv func(string) string) error {
	var err error
	switch env := strings.TrimSpace(getenv(EnvToken)); {
	case fl.TokenFile != "" && (fl.CertFile != "" || fl.KeyFile != ""):
		return fmt.Errorf(bothCredentials, "the flags")
	case fl.CertFile != "" || fl.KeyFile != "":
		c.CertFile, c.KeyFile = expandHome(fl.CertFile), expandHome(fl.KeyFile)
	case fl.TokenFile != "":
		c.Token, err = readToken("--token-file", fl.TokenFile)
	case env != "":
		c.Token = env
	case ctx.TokenFile != "" && (ctx.CertFile != "" || ctx.KeyFile != ""):
		return fmt.Errorf(bothCredentials, "context "+c.Context+"'s token_file and cert_file")
	case ctx.CertFile != "" || ctx.KeyFile != "":
		c.CertFile, c.KeyFile = expandHome(ctx.CertFile), expandHome(ctx.KeyFile)
	case ctx.TokenFile != "":
		c.Token, err = readToken("context "+c.Context+": token_file", ctx.TokenFile)
	}
	return err
}

func readToken(field, path string) (string, error) {
	b, err := os.ReadFile(expandHome(path))
	if err != nil {
		return "", fmt.Errorf("%s: %v", field, err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("%s: %s is empty", field, path)
	}
	return t, nil
}

// expandHome expands a leading "~/".
func expandHome(p string) string {
	if rest, ok := strings.CutPrefix(p, "~/"); ok {
		if home, err := os.UserHomeDir(); err == nil {
			return home + "/" + rest
		}
	}
	return p
}

func first(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

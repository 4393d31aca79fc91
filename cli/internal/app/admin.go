package app

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/cli/internal/output"
)

func (a *app) tokensCommand() *cobra.Command {
	c := &cobra.Command{Use: "tokens", Aliases: []string{"token"}, Short: "Operator API tokens and agents' join tokens (admin)"}
	var all bool
	ls := &cobra.Command{
		Use: "ls", Short: "List operator API tokens (never their secrets)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.connect()
			if err != nil {
				return err
			}
			resp, err := call(cmd.Context(), c.Admin.ListAPITokens, &flotillav1.ListAPITokensRequest{IncludeInactive: all})
			if err != nil {
				return err
			}
			if done, err := a.emit(resp); done || err != nil {
				return err
			}
			t := output.NewTable(a.env.Stdout, "ID", "NAME", "ROLE", "CREATED", "EXPIRES", "REVOKED", "BY")
			for _, tk := range resp.GetTokens() {
				t.Row(tk.GetId(), tk.GetName(), enumName(tk.GetRole(), "ROLE_"), ts(tk.GetCreatedAt()), ts(tk.GetExpiresAt()),
					ts(tk.GetRevokedAt()), tk.GetCreatedBy())
			}
			return t.Flush()
		},
	}
	ls.Flags().BoolVar(&all, "all", false, "include revoked and expired tokens")
	c.AddCommand(ls, a.tokenCreateCommand(), a.tokenRevokeCommand(), a.joinTokensCommand(), a.certCommand())
	return c
}

func parseRole(s string) (flotillav1.Role, error) {
	v, ok := flotillav1.Role_value["ROLE_"+strings.ToUpper(s)]
	if !ok || v == 0 {
		return 0, usage("--role %q: want viewer, operator or admin", s)
	}
	return flotillav1.Role(v), nil
}

func (a *app) tokenCreateCommand() *cobra.Command {
	var role string
	var ttl time.Duration
	c := &cobra.Command{
		Use: "create NAME --role ROLE", Short: "Create an operator token; its secret is printed once", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := parseRole(role)
			if err != nil {
				return err
			}
			req := &flotillav1.CreateAPITokenRequest{Name: args[0], Role: r}
			if ttl > 0 {
				req.Ttl = durationpb.New(ttl)
			}
			c, err := a.connect()
			if err != nil {
				return err
			}
			resp, err := call(cmd.Context(), c.Admin.CreateAPIToken, req)
			if err != nil {
				return err
			}
			if done, err := a.emit(resp); done || err != nil {
				return err
			}
			_, err = fmt.Fprintf(a.env.Stdout, "token %s (%s, role %s) created; its secret, shown once:\n%s\n",
				resp.GetToken().GetId(), args[0], role, resp.GetSecret())
			return err
		},
	}
	c.Flags().StringVar(&role, "role", "", "viewer, operator or admin (required)")
	c.Flags().DurationVar(&ttl, "ttl", 0, "lifetime (e.g. 720h); 0: no expiry")
	return c
}

func (a *app) tokenRevokeCommand() *cobra.Command {
	return &cobra.Command{
		Use: "revoke TOKEN_ID", Short: "Revoke an operator token at once", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.connect()
			if err != nil {
				return err
			}
			resp, err := call(cmd.Context(), c.Admin.RevokeAPIToken, &flotillav1.RevokeAPITokenRequest{TokenId: args[0]})
			if err != nil {
				return err
			}
			if done, err := a.emit(resp); done || err != nil {
				return err
			}
			_, err = fmt.Fprintf(a.env.Stdout, "token %s revoked\n", args[0])
			return err
		},
	}
}

func (a *app) joinTokensCommand() *cobra.Command {
	c := &cobra.Command{Use: "join", Short: "Join tokens, with which new agents register"}
	var req flotillav1.CreateJoinTokenRequest
	var ttl time.Duration
	var pinned map[string]string
	create := &cobra.Command{
		Use: "create", Short: "Create a join token; its secret and the CA's fingerprint are printed once", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if ttl > 0 {
				req.Ttl = durationpb.New(ttl)
			}
			req.Labels = pinned
			c, err := a.connect()
			if err != nil {
				return err
			}
			resp, err := call(cmd.Context(), c.Fleet.CreateJoinToken, &req)
			if err != nil {
				return err
			}
			if done, err := a.emit(resp); done || err != nil {
				return err
			}
			_, err = fmt.Fprintf(a.env.Stdout, "join token %s, %d uses, expires %s\ntoken: %s\nca sha256: %s\n",
				resp.GetTokenId(), resp.GetMaxUses(), ts(resp.GetExpiresAt()), resp.GetToken(), resp.GetCaCertSha256())
			return err
		},
	}
	create.Flags().DurationVar(&ttl, "ttl", 0, "how long it is valid (default 1h)")
	create.Flags().Int32Var(&req.MaxUses, "max-uses", 0, "registrations it allows (default 1)")
	create.Flags().StringToStringVar(&pinned, "label", nil, "labels pinned on the agents it registers (k=v, repeatable)")
	create.Flags().StringVar(&req.Description, "description", "", "who or what it is for")
	var all bool
	ls := &cobra.Command{
		Use: "ls", Short: "List join tokens", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.connect()
			if err != nil {
				return err
			}
			resp, err := call(cmd.Context(), c.Admin.ListJoinTokens, &flotillav1.ListJoinTokensRequest{IncludeInactive: all})
			if err != nil {
				return err
			}
			if done, err := a.emit(resp); done || err != nil {
				return err
			}
			t := output.NewTable(a.env.Stdout, "ID", "USES", "LABELS", "EXPIRES", "REVOKED", "DESCRIPTION")
			for _, j := range resp.GetTokens() {
				t.Row(j.GetId(), fmt.Sprintf("%d/%d", j.GetUses(), j.GetMaxUses()), labels(j.GetLabels()), ts(j.GetExpiresAt()),
					ts(j.GetRevokedAt()), j.GetDescription())
			}
			return t.Flush()
		},
	}
	ls.Flags().BoolVar(&all, "all", false, "include revoked, expired and used-up tokens")
	revoke := &cobra.Command{
		Use: "revoke TOKEN_ID", Short: "Revoke a join token at once", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.connect()
			if err != nil {
				return err
			}
			resp, err := call(cmd.Context(), c.Admin.RevokeJoinToken, &flotillav1.RevokeJoinTokenRequest{TokenId: args[0]})
			if err != nil {
				return err
			}
			if done, err := a.emit(resp); done || err != nil {
				return err
			}
			_, err = fmt.Fprintf(a.env.Stdout, "join token %s revoked\n", args[0])
			return err
		},
	}
	c.AddCommand(create, ls, revoke)
	return c
}

func (a *app) auditCommand() *cobra.Command {
	var req flotillav1.ListAuditEventsRequest
	var since time.Duration
	c := &cobra.Command{Use: "audit", Short: "The audit trail of mutating calls (operator role)"}
	ls := &cobra.Command{
		Use: "ls", Short: "List audit events, newest first", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if since > 0 {
				req.Since = timestamppb.New(time.Now().Add(-since))
			}
			c, err := a.connect()
			if err != nil {
				return err
			}
			resp, err := call(cmd.Context(), c.Admin.ListAuditEvents, &req)
			if err != nil {
				return err
			}
			if done, err := a.emit(resp); done || err != nil {
				return err
			}
			t := output.NewTable(a.env.Stdout, "ID", "AT", "PRINCIPAL", "METHOD", "CODE", "MESSAGE")
			for _, e := range resp.GetEvents() {
				t.Row(fmt.Sprint(e.GetId()), ts(e.GetAt()), e.GetPrincipal(), e.GetMethod(), e.GetCode(), e.GetMessage())
			}
			return t.Flush()
		},
	}
	f := ls.Flags()
	f.StringVar(&req.Principal, "principal", "", `only this caller, e.g. "token:at-..."`)
	f.StringVar(&req.Method, "method", "", `only this full method, e.g. "/flotilla.v1.RolloutService/StartRollout"`)
	f.BoolVar(&req.FailedOnly, "failed", false, "only failed calls")
	f.DurationVar(&since, "since", 0, "only events of the last duration (e.g. 24h)")
	f.Int32Var(&req.PageSize, "limit", 100, "at most this many (1-1000)")
	c.AddCommand(ls)
	return c
}

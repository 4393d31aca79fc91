package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"gopkg.in/yaml.v3"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/cli/internal/output"
)

func (a *app) serviceCommand() *cobra.Command {
	c := &cobra.Command{Use: "service", Aliases: []string{"services", "svc"}, Short: "Service definitions: what runs where, and how it is rolled out"}
	c.AddCommand(a.serviceApplyCommand(), a.serviceListCommand(), a.serviceGetCommand(), a.serviceHistoryCommand(),
		a.serviceRemediationsCommand())
	return c
}

func (a *app) serviceApplyCommand() *cobra.Command {
	var file string
	var dryRun bool
	c := &cobra.Command{
		Use:   "apply -f FILE",
		Short: "Create or replace a service from a YAML file, showing the difference from the current definition",
		Long: `apply reads a service definition (the API's Service message as YAML: name,
container, selector, health_url, load_balancer, default_strategy; durations
as "10s"), shows how it differs from the stored one, and stores it unless
--dry-run. "-f -" reads standard input. flotilla service get NAME -o yaml
prints a definition in the same form.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return usage("-f: required: the service's YAML file, or - for standard input")
			}
			svc, err := a.readService(file)
			if err != nil {
				return err
			}
			return a.applyService(cmd.Context(), svc, dryRun)
		},
	}
	c.Flags().StringVarP(&file, "file", "f", "", "the service's YAML file (- for standard input)")
	c.Flags().BoolVar(&dryRun, "dry-run", false, "show the difference and store nothing")
	return c
}

// readService parses a service's YAML: converted to JSON and read with the
// API's JSON mapping, so field names and values are the API's (snake_case
// or lowerCamelCase names, enums by name, durations as "10s").
func (a *app) readService(file string) (*flotillav1.Service, error) {
	var b []byte
	var err error
	if file == "-" {
		b, err = io.ReadAll(a.env.Stdin)
	} else {
		b, err = os.ReadFile(file)
	}
	if err != nil {
		return nil, usage("-f: %v", err)
	}
	return parseService(file, b)
}

func parseService(file string, b []byte) (*flotillav1.Service, error) {
	var doc any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, usage("%s: %v", file, err)
	}
	if m, ok := doc.(map[string]any); ok {
		if inner, ok := m["service"].(map[string]any); ok && len(m) == 1 {
			doc = inner // a PutServiceRequest's shape
		}
	}
	if err := normalizeDurations(doc, (&flotillav1.Service{}).ProtoReflect().Descriptor()); err != nil {
		return nil, usage("%s: %v", file, err)
	}
	js, err := json.Marshal(doc)
	if err != nil {
		return nil, usage("%s: %v", file, err)
	}
	var svc flotillav1.Service
	if err := protojson.Unmarshal(js, &svc); err != nil {
		return nil, usage("%s: %v", file, err)
	}
	return &svc, nil
}

// applyService shows the difference from the stored definition and,
// unless dryRun, stores svc.
func (a *app) applyService(ctx context.Context, svc *flotillav1.Service, dryRun bool) error {
	c, err := a.connect()
	if err != nil {
		return err
	}
	cur, err := call(ctx, c.Rollout.GetService, &flotillav1.GetServiceRequest{Name: svc.GetName()})
	if err != nil && status.Code(err) != codes.NotFound {
		return err
	}
	diff, err := serviceDiff(cur.GetService(), svc)
	if err != nil {
		return err
	}
	w := a.progress()
	switch {
	case cur.GetService() == nil:
		fmt.Fprintf(w, "service %s is new:\n%s", svc.GetName(), diff)
	case diff == "":
		fmt.Fprintf(w, "service %s: no change\n", svc.GetName())
	default:
		fmt.Fprintf(w, "service %s changes:\n%s", svc.GetName(), diff)
	}
	if dryRun || (diff == "" && cur.GetService() != nil) {
		if dryRun {
			fmt.Fprintln(w, "dry run: nothing stored")
		}
		if a.format.Machine() && cur.GetService() != nil {
			return output.Write(a.env.Stdout, a.format, cur)
		}
		return nil
	}
	resp, err := call(ctx, c.Rollout.PutService, &flotillav1.PutServiceRequest{Service: svc})
	if err != nil {
		return err
	}
	if done, err := a.emit(resp); done || err != nil {
		return err
	}
	_, err = fmt.Fprintf(a.env.Stdout, "service %s stored\n", svc.GetName())
	return err
}

// serviceDiff is the line diff of two definitions as YAML, without the
// output-only fields; "" when they are the same.
func serviceDiff(cur, next *flotillav1.Service) (string, error) {
	text := func(s *flotillav1.Service) (string, error) {
		if s == nil {
			return "", nil
		}
		s = proto.Clone(s).(*flotillav1.Service)
		s.CreatedAt, s.UpdatedAt, s.CurrentImage = nil, nil, ""
		b, err := output.YAMLOf(s)
		return string(b), err
	}
	x, err := text(cur)
	if err != nil {
		return "", err
	}
	y, err := text(next)
	if err != nil {
		return "", err
	}
	return output.Diff(x, y), nil
}

func (a *app) serviceListCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List services",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.connect()
			if err != nil {
				return err
			}
			resp, err := call(cmd.Context(), c.Rollout.ListServices, &flotillav1.ListServicesRequest{})
			if err != nil {
				return err
			}
			if done, err := a.emit(resp); done || err != nil {
				return err
			}
			t := output.NewTable(a.env.Stdout, "NAME", "CONTAINER", "SELECTOR", "CURRENT IMAGE", "UPDATED")
			for _, s := range resp.GetServices() {
				t.Row(s.GetName(), s.GetContainer(), s.GetSelector(), s.GetCurrentImage(), ts(s.GetUpdatedAt()))
			}
			return t.Flush()
		},
	}
}

func (a *app) serviceGetCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "get NAME",
		Short: "Show a service's definition (as YAML by default: what apply -f takes)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.connect()
			if err != nil {
				return err
			}
			resp, err := call(cmd.Context(), c.Rollout.GetService, &flotillav1.GetServiceRequest{Name: args[0]})
			if err != nil {
				return err
			}
			if done, err := a.emit(resp); done || err != nil {
				return err
			}
			b, err := output.YAMLOf(resp.GetService())
			if err != nil {
				return err
			}
			_, err = a.env.Stdout.Write(b)
			return err
		},
	}
}

func (a *app) serviceHistoryCommand() *cobra.Command {
	var limit int32
	c := &cobra.Command{
		Use:   "history NAME",
		Short: "A service's rollouts, newest first: its revision history",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.listRollouts(cmd, args[0], limit)
		},
	}
	c.Flags().Int32Var(&limit, "limit", 20, "at most this many (1-200)")
	return c
}

// normalizeDurations rewrites the duration fields of a YAML document of
// message md from Go's notation ("10m", "1h30m") to the JSON mapping's
// seconds ("600s"), which is all protojson reads.
func normalizeDurations(doc any, md protoreflect.MessageDescriptor) error {
	m, ok := doc.(map[string]any)
	if !ok {
		return nil
	}
	for key, v := range m {
		fd := md.Fields().ByJSONName(key)
		if fd == nil {
			fd = md.Fields().ByName(protoreflect.Name(key))
		}
		if fd == nil || fd.Message() == nil || fd.IsMap() {
			continue
		}
		if fd.IsList() {
			// A list of messages (deploy windows): each element.
			items, _ := v.([]any)
			for _, item := range items {
				if err := normalizeDurations(item, fd.Message()); err != nil {
					return err
				}
			}
			continue
		}
		if fd.Message().FullName() != "google.protobuf.Duration" {
			if err := normalizeDurations(v, fd.Message()); err != nil {
				return err
			}
			continue
		}
		text, ok := v.(string)
		if !ok {
			return fmt.Errorf("%s: want a duration such as \"10s\" or \"5m\", got %v", key, v)
		}
		d, err := time.ParseDuration(text)
		if err != nil {
			return fmt.Errorf("%s: %q is not a duration such as \"10s\" or \"5m\"", key, text)
		}
		m[key] = strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "s"
	}
	return nil
}

package main

import (
	"fmt"
	"io"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// key is the API's key object; the CLI shows some fields and passes the
// whole object through with -o json.
type key map[string]any

func (k key) str(name string) string {
	switch v := k[name].(type) {
	case string:
		return v
	case []any:
		var s []string
		for _, e := range v {
			s = append(s, fmt.Sprint(e))
		}
		return strings.Join(s, " ")
	case nil:
		return "-"
	}
	return fmt.Sprint(k[name])
}

func keyTable(w io.Writer, keys []key) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tKEY\tENV\tSTATUS\tSCOPES\tCREATED\tLAST USED")
	for _, k := range keys {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.str("id"), k.str("name"), k.str("display"), k.str("environment"),
			k.str("status"), k.str("scopes"), k.str("created_at"), k.str("last_used_at"))
	}
	_ = tw.Flush()
}

// keyFlags are the fields a create or an update sets.
type keyFlags struct {
	name, description, environment, expiresIn, expiresAt, contact, createdBy string
	scopes, ips, origins, metadata                                           []string
	browserWrites, noExpiry                                                  bool
	rpm                                                                      int
}

func (f *keyFlags) register(fs *pflag.FlagSet, create bool) {
	fs.StringVar(&f.name, "name", "", "the key's name")
	fs.StringVar(&f.description, "description", "", "what the key is for")
	fs.StringSliceVar(&f.scopes, "scope", nil, "a scope such as invoices:read (repeat, or comma-separate)")
	fs.StringVar(&f.expiresIn, "expires-in", "", "expire after this long: 30d, 12h")
	fs.StringVar(&f.expiresAt, "expires-at", "", "expire at this RFC 3339 time")
	fs.StringSliceVar(&f.ips, "allowed-ip", nil, "an address or CIDR block the key may be used from (repeat)")
	fs.StringSliceVar(&f.origins, "allowed-origin", nil, "an origin whose pages may use the key: a browser key (repeat)")
	fs.BoolVar(&f.browserWrites, "allow-browser-writes", false, "let a browser key hold scopes other than resource:read")
	fs.StringVar(&f.contact, "contact", "", "the email address to reach about the key")
	fs.IntVar(&f.rpm, "rate-limit", 0, "requests per minute, one of the deployment's tiers")
	fs.StringSliceVar(&f.metadata, "metadata", nil, "key=value (repeat)")
	if create {
		fs.StringVar(&f.environment, "environment", "", "live or test; default the management key's")
		fs.StringVar(&f.createdBy, "created-by", "", "the member the key is for")
	} else {
		fs.BoolVar(&f.noExpiry, "no-expiry", false, "remove the expiry")
	}
}

// body is the request's JSON: with only, the fields whose flags were set
// (an update changes nothing else).
func (f *keyFlags) body(fs *pflag.FlagSet, only bool) (map[string]any, error) {
	b := map[string]any{}
	set := func(flag, field string, v any) {
		if !only || fs.Changed(flag) {
			b[field] = v
		}
	}
	set("name", "name", f.name)
	if f.description != "" || fs.Changed("description") {
		set("description", "description", f.description)
	}
	if f.scopes != nil {
		set("scope", "scopes", f.scopes)
	}
	if f.ips != nil {
		set("allowed-ip", "allowed_ips", f.ips)
	}
	if f.origins != nil {
		set("allowed-origin", "allowed_origins", f.origins)
	}
	if fs.Changed("allow-browser-writes") {
		b["allow_browser_writes"] = f.browserWrites
	}
	if fs.Changed("contact") {
		b["contact"] = f.contact
	}
	if fs.Changed("rate-limit") {
		b["rate_limit"] = map[string]int{"requests_per_minute": f.rpm}
	}
	if f.environment != "" {
		b["environment"] = f.environment
	}
	if f.createdBy != "" {
		b["created_by"] = f.createdBy
	}
	if len(f.metadata) > 0 {
		m := map[string]string{}
		for _, kv := range f.metadata {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return nil, usagef("--metadata %q is not key=value", kv)
			}
			m[k] = v
		}
		b["metadata"] = m
	}
	switch {
	case f.expiresIn != "" && f.expiresAt != "", f.noExpiry && (f.expiresIn != "" || f.expiresAt != ""):
		return nil, usagef("give one of --expires-in, --expires-at and --no-expiry")
	case f.expiresIn != "":
		d, err := parseLifetime(f.expiresIn)
		if err != nil {
			return nil, err
		}
		if only {
			b["expires_at"] = time.Now().Add(d).UTC().Format(time.RFC3339)
		} else {
			b["expires_in"] = int64(d.Seconds())
		}
	case f.expiresAt != "":
		b["expires_at"] = f.expiresAt
	case f.noExpiry:
		b["expires_at"] = nil
	}
	return b, nil
}

// created is the answer to a create or a rotate.
type created struct {
	Key         key    `json:"key"`
	Secret      string `json:"secret"`
	PreviousKey key    `json:"previous_key,omitempty"`
}

// showCreated prints the secret alone (--secret-only), the API's object
// (-o json), or the key with its secret and a warning.
func (c *cli) showCreated(out created, secretOnly bool) error {
	if secretOnly {
		_, err := fmt.Fprintln(c.stdout, out.Secret)
		return err
	}
	return c.print(out, func(w io.Writer) {
		keyTable(w, []key{out.Key})
		fmt.Fprintf(w, "\nsecret: %s\n", out.Secret)
		fmt.Fprintln(c.stderr, "keyward: the secret is shown this once; store it now")
	})
}

func (c *cli) keysCommand() *cobra.Command {
	keys := &cobra.Command{Use: "keys", Short: "List, show, create, update, rotate and revoke a tenant's keys"}
	var env, status, createdBy string
	var limit int
	var all bool
	list := &cobra.Command{Use: "list", Short: "List the tenant's keys, newest first", Args: cobra.NoArgs,
		Example: "  keyward keys list --environment live\n  keyward keys list --all -o json | jq -r '.[].id'",
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := c.tenantClient()
			if err != nil {
				return err
			}
			q := url.Values{}
			for name, v := range map[string]string{"environment": env, "status": status, "created_by": createdBy} {
				if v != "" {
					q.Set(name, v)
				}
			}
			var keys []key
			err = c.pages(cmd, cl, "/v1/keys", q, limit, all, func(page []byte) error { return appendPage(page, &keys) })
			if err != nil {
				return err
			}
			return c.print(keys, func(w io.Writer) { keyTable(w, keys) })
		}}
	list.Flags().StringVar(&env, "environment", "", "live or test")
	list.Flags().StringVar(&status, "status", "", "active, expiring, expired or revoked")
	list.Flags().StringVar(&createdBy, "created-by", "", "a member's keys only")
	list.Flags().IntVar(&limit, "limit", 20, "keys per page (1 to 100)")
	list.Flags().BoolVar(&all, "all", false, "every page")

	get := &cobra.Command{Use: "get KEY_ID", Short: "Show a key", Args: cobra.ExactArgs(1), Example: "  keyward keys get key_AbCdEfGhIjKl",
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.tenantClient()
			if err != nil {
				return err
			}
			var k key
			if err := cl.call(cmd.Context(), "GET", "/v1/keys/"+url.PathEscape(args[0]), nil, "", &k); err != nil {
				return err
			}
			return c.print(k, func(w io.Writer) { keyTable(w, []key{k}) })
		}}

	var cf keyFlags
	var secretOnly bool
	create := &cobra.Command{Use: "create", Short: "Create a key; its secret is shown once", Args: cobra.NoArgs,
		Example: "  keyward keys create --name billing-sync --scope invoices:read --expires-in 90d\n" +
			"  KEY=$(keyward keys create --name ci --scope invoices:read --environment test --secret-only)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := cf.body(cmd.Flags(), false)
			if err != nil {
				return err
			}
			cl, err := c.tenantClient()
			if err != nil {
				return err
			}
			var out created
			if err := cl.call(cmd.Context(), "POST", "/v1/keys", b, c.writeKey(), &out); err != nil {
				return err
			}
			return c.showCreated(out, secretOnly)
		}}
	cf.register(create.Flags(), true)
	create.Flags().BoolVar(&secretOnly, "secret-only", false, "print only the secret, on standard output")

	var uf keyFlags
	update := &cobra.Command{Use: "update KEY_ID", Short: "Change a key's fields; only the flags given change", Args: cobra.ExactArgs(1),
		Example: "  keyward keys update key_AbCdEfGhIjKl --scope invoices:read --contact ops@example.com\n  keyward keys update key_AbCdEfGhIjKl --no-expiry",
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := uf.body(cmd.Flags(), true)
			if err != nil {
				return err
			}
			if len(b) == 0 {
				return usagef("nothing to change: give the flags of the fields to change")
			}
			cl, err := c.tenantClient()
			if err != nil {
				return err
			}
			var k key
			if err := cl.call(cmd.Context(), "PATCH", "/v1/keys/"+url.PathEscape(args[0]), b, c.writeKey(), &k); err != nil {
				return err
			}
			return c.print(k, func(w io.Writer) { keyTable(w, []key{k}) })
		}}
	uf.register(update.Flags(), false)

	var overlap string
	var rotSecretOnly bool
	rotate := &cobra.Command{Use: "rotate KEY_ID", Short: "Replace a key; the old one keeps working for the overlap", Args: cobra.ExactArgs(1),
		Example: "  keyward keys rotate key_AbCdEfGhIjKl --overlap 12h\n  NEW=$(keyward keys rotate key_AbCdEfGhIjKl --overlap 0s --secret-only)",
		RunE: func(cmd *cobra.Command, args []string) error {
			var body map[string]any
			if overlap != "" {
				d, err := parseLifetime(overlap)
				if err != nil {
					return err
				}
				body = map[string]any{"expire_old_in": int64(d.Seconds())}
			}
			cl, err := c.tenantClient()
			if err != nil {
				return err
			}
			var out created
			if err := cl.call(cmd.Context(), "POST", "/v1/keys/"+url.PathEscape(args[0])+"/rotate", body, c.writeKey(), &out); err != nil {
				return err
			}
			return c.showCreated(out, rotSecretOnly)
		}}
	rotate.Flags().StringVar(&overlap, "overlap", "", "how long the old key keeps working: 12h (default), 0s ends it at once, at most 7d")
	rotate.Flags().BoolVar(&rotSecretOnly, "secret-only", false, "print only the new secret, on standard output")

	revoke := &cobra.Command{Use: "revoke KEY_ID", Short: "Revoke a key: refused from the very next request", Args: cobra.ExactArgs(1),
		Example: "  keyward keys revoke key_AbCdEfGhIjKl",
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.tenantClient()
			if err != nil {
				return err
			}
			var k key
			if err := cl.call(cmd.Context(), "POST", "/v1/keys/"+url.PathEscape(args[0])+"/revoke", nil, c.writeKey(), &k); err != nil {
				return err
			}
			return c.print(k, func(w io.Writer) { keyTable(w, []key{k}) })
		}}
	keys.AddCommand(list, get, create, update, rotate, revoke)
	return keys
}

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// pages reads a listing: one page, or with all every page, showing the
// count so far on a terminal.
func (c *cli) pages(cmd *cobra.Command, cl *client, path string, q url.Values, limit int, all bool, each func(page []byte) error) error {
	q.Set("limit", strconv.Itoa(limit))
	seen := 0
	for {
		var page struct {
			Data       []json.RawMessage `json:"data"`
			NextCursor *string           `json:"next_cursor"`
		}
		var raw json.RawMessage
		if err := cl.call(cmd.Context(), "GET", path+"?"+q.Encode(), nil, "", &raw); err != nil {
			return err
		}
		if err := json.Unmarshal(raw, &page); err != nil {
			return err
		}
		if err := each(raw); err != nil {
			return err
		}
		seen += len(page.Data)
		if !all || page.NextCursor == nil {
			if all {
				c.progress("%d read\n", seen)
			}
			return nil
		}
		c.progress("%d read...", seen)
		q.Set("cursor", *page.NextCursor)
	}
}

// appendPage adds a page's data to out.
func appendPage[T any](page []byte, out *[]T) error {
	var p struct {
		Data []T `json:"data"`
	}
	if err := json.Unmarshal(page, &p); err != nil {
		return err
	}
	*out = append(*out, p.Data...)
	return nil
}

func (c *cli) auditCommand() *cobra.Command {
	var keyID string
	var limit int
	var all bool
	cmd := &cobra.Command{Use: "audit", Short: "List the tenant's audit entries, newest first", Args: cobra.NoArgs,
		Example: "  keyward audit --key key_AbCdEfGhIjKl\n  keyward audit --all -o json",
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := c.tenantClient()
			if err != nil {
				return err
			}
			q := url.Values{}
			if keyID != "" {
				q.Set("key_id", keyID)
			}
			var entries []key
			if err := c.pages(cmd, cl, "/v1/audit", q, limit, all, func(p []byte) error { return appendPage(p, &entries) }); err != nil {
				return err
			}
			return c.print(entries, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "TIME\tACTION\tKEY\tACTOR")
				for _, e := range entries {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.str("time"), e.str("action"), e.str("key_id"), e.str("actor"))
				}
				_ = tw.Flush()
			})
		}}
	cmd.Flags().StringVar(&keyID, "key", "", "one key's entries")
	cmd.Flags().IntVar(&limit, "limit", 20, "entries per page (1 to 100)")
	cmd.Flags().BoolVar(&all, "all", false, "every page")
	return cmd
}

// maxRevokeCalls bounds the calls of a bulk revocation that the API asks
// to continue (503 revocation_incomplete).
const maxRevokeCalls = 100

// untilDone repeats a bulk revocation while the API says it is
// incomplete, after its Retry-After, and returns the last answer.
func (c *cli) untilDone(cmd *cobra.Command, call func(out any) error) (map[string]any, error) {
	for i := 1; ; i++ {
		var out map[string]any
		err := call(&out)
		var ae *apiError
		if !errors.As(err, &ae) || ae.Code != "revocation_incomplete" || i == maxRevokeCalls {
			if err == nil && i > 1 {
				c.progress("done after %d calls\n", i)
			}
			return out, err
		}
		c.progress("revoking: call %d, continuing in %v...", i, ae.RetryAfter)
		select {
		case <-cmd.Context().Done():
			return nil, cmd.Context().Err()
		case <-time.After(max(ae.RetryAfter, 100*time.Millisecond)):
		}
	}
}

func (c *cli) membersCommand() *cobra.Command {
	members := &cobra.Command{Use: "members", Short: "Act on a tenant's members"}
	revoke := &cobra.Command{Use: "revoke-keys MEMBER_ID", Short: "Revoke every key a member created (a removed member's)", Args: cobra.ExactArgs(1),
		Example: "  keyward members revoke-keys mem_alice",
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.tenantClient()
			if err != nil {
				return err
			}
			idem := c.writeKey()
			out, err := c.untilDone(cmd, func(out any) error {
				return cl.call(cmd.Context(), "POST", "/v1/members/"+url.PathEscape(args[0])+"/revoke-keys", nil, idem, out)
			})
			if err != nil {
				return err
			}
			return c.print(out, func(w io.Writer) { fmt.Fprintf(w, "revoked %v keys of %s\n", out["revoked"], args[0]) })
		}}
	members.AddCommand(revoke)
	return members
}

func (c *cli) tenantsCommand() *cobra.Command {
	tenants := &cobra.Command{Use: "tenants", Short: "Onboard and offboard tenants (the platform's operators)"}
	var id, name, contact string
	create := &cobra.Command{Use: "create", Short: "Onboard a tenant with its first management keys", Args: cobra.NoArgs,
		Example: "  keyward tenants create --id acme --name 'Acme Inc' --contact security@acme.example",
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := c.operatorClient(cmd.Context())
			if err != nil {
				return err
			}
			var out map[string]any
			body := map[string]string{"tenant_id": id, "name": name}
			if contact != "" {
				body["contact"] = contact
			}
			if err := cl.call(cmd.Context(), "POST", "/v1/tenants", body, c.writeKey(), &out); err != nil {
				return err
			}
			return c.print(out, func(w io.Writer) {
				k, _ := out["key"].(map[string]any)
				tk, _ := out["test_key"].(map[string]any)
				fmt.Fprintf(w, "tenant %s\nlive management key %s: %v\ntest management key %s: %v\n", id, key(k).str("id"), out["secret"], key(tk).str("id"), out["test_secret"])
				fmt.Fprintln(c.stderr, "keyward: the secrets are shown this once; hand them to the tenant now")
			})
		}}
	create.Flags().StringVar(&id, "id", "", "the tenant's id: lowercase letters, digits, '_' or '-'")
	create.Flags().StringVar(&name, "name", "", "the tenant's name")
	create.Flags().StringVar(&contact, "contact", "", "the email address to reach about its keys")
	offboard := &cobra.Command{Use: "offboard TENANT_ID", Short: "Offboard a tenant: every key revoked, new ones refused", Args: cobra.ExactArgs(1),
		Example: "  keyward tenants offboard acme",
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.operatorClient(cmd.Context())
			if err != nil {
				return err
			}
			idem := c.writeKey()
			out, err := c.untilDone(cmd, func(out any) error {
				return cl.call(cmd.Context(), "POST", "/v1/tenants/"+url.PathEscape(args[0])+"/offboard", nil, idem, out)
			})
			if err != nil {
				return err
			}
			return c.print(out, func(w io.Writer) { fmt.Fprintf(w, "tenant %s offboarded; %v keys revoked\n", args[0], out["revoked"]) })
		}}
	tenants.AddCommand(create, offboard)
	return tenants
}

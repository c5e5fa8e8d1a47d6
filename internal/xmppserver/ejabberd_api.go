package xmppserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// ejabberdAPI calls mod_http_api commands on the loopback listener.
// Keep-alives are off so no idle connection goroutines outlive a call.
type ejabberdAPI struct {
	base   string
	client *http.Client
}

func newEjabberdAPI(addr string) *ejabberdAPI {
	return &ejabberdAPI{
		base: "http://" + addr + "/api/",
		client: &http.Client{
			Timeout:   10 * time.Second,
			Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
		},
	}
}

// apiError is a non-200 answer from mod_http_api.
type apiError struct {
	command string
	status  int
	body    string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("api %s: HTTP %d: %s", e.command, e.status, e.body)
}

// isConflict reports whether err says the account already exists.
func isConflict(err error) bool {
	var ae *apiError
	if !errors.As(err, &ae) {
		return false
	}
	return ae.status == http.StatusConflict || strings.Contains(ae.body, "already registered")
}

// call posts args as JSON to /api/command and returns the response body.
func (a *ejabberdAPI) call(ctx context.Context, command string, args any) ([]byte, error) {
	body, err := json.Marshal(args)
	if err != nil {
		return nil, fmt.Errorf("api %s: %w", command, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.base+command, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("api %s: %w", command, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("api %s: %w", command, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("api %s: read: %w", command, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &apiError{command: command, status: resp.StatusCode, body: strings.TrimSpace(string(out))}
	}
	return out, nil
}

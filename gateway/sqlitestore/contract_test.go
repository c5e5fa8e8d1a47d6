package sqlitestore

import (
	"context"
	"path/filepath"
	"testing"

	"imip-transport/gateway"
	"imip-transport/gateway/storetest"
)

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Opener {
		path := filepath.Join(t.TempDir(), "store.db")
		return func(ctx context.Context, keyFile string) (gateway.Store, error) {
			return Open(ctx, path, Options{KeyFile: keyFile})
		}
	})
}

package pgstore

import (
	"context"
	"testing"

	"go.uber.org/goleak"

	"imip-transport/gateway"
	"imip-transport/gateway/storetest"
	"imip-transport/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestContract(t *testing.T) {
	pg := testenv.StartPostgres(t)
	storetest.Run(t, func(t *testing.T) storetest.Opener {
		dsn := pg.NewDatabase(t)
		return func(ctx context.Context, keyFile string) (gateway.Store, error) {
			return Open(ctx, dsn, Options{KeyFile: keyFile})
		}
	})
}

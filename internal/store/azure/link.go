package azure

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/service"

	"github.com/nightshift-jobs/nightshift/internal/store"
)

// ReadURL returns a read-only SAS URL of a blob valid from start until expiry: a service
// SAS signed with Options.SharedKey, else a user delegation SAS (Options.UserDelegation).
func (s *Store) ReadURL(ctx context.Context, cont, name string, start, expiry time.Time) (string, error) {
	ctx = s.op(ctx, "ReadURL")
	if err := store.CheckBlob(cont, name); err != nil {
		return "", err
	}
	svc := s.b.ServiceClient()
	blobURL := svc.NewContainerClient(cont).NewBlobClient(name).URL()
	proto := sas.ProtocolHTTPS
	if strings.HasPrefix(blobURL, "http://") {
		proto = sas.ProtocolHTTPSandHTTP
	}
	vals := sas.BlobSignatureValues{
		Protocol: proto, StartTime: start.UTC(), ExpiryTime: expiry.UTC(), Permissions: (&sas.BlobPermissions{Read: true}).String(),
		ContainerName: cont, BlobName: name,
	}
	var (
		qp  sas.QueryParameters
		err error
	)
	switch {
	case s.opts.SharedKey != nil:
		qp, err = vals.SignWithSharedKey(s.opts.SharedKey)
	case s.opts.UserDelegation:
		var udc *service.UserDelegationCredential
		if udc, err = s.delegation(ctx, svc, expiry); err == nil {
			qp, err = vals.SignWithUserDelegation(udc)
		}
	default:
		return "", errors.New("sign a read URL: the driver has neither a shared key nor user delegation (a SAS connection string cannot sign links)")
	}
	if err != nil {
		return "", fmt.Errorf("sign a read URL of %s/%s: %w", cont, name, err)
	}
	return blobURL + "?" + qp.Encode(), nil
}

// delegation returns a cached user delegation key that outlives expiry by an hour,
// requesting one for 6 hours when needed.
func (s *Store) delegation(ctx context.Context, svc *service.Client, expiry time.Time) (*service.UserDelegationCredential, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.udc != nil && expiry.Before(s.udcTill.Add(-time.Hour)) {
		return s.udc, nil
	}
	now := time.Now().UTC()
	till := now.Add(6 * time.Hour)
	if !expiry.Before(till.Add(-time.Hour)) {
		return nil, fmt.Errorf("a read URL may last at most 5 hours with user delegation, not until %s", expiry.Format(time.RFC3339))
	}
	startAt, tillAt := now.Add(-5*time.Minute).Format(sas.TimeFormat), till.Format(sas.TimeFormat)
	udc, err := svc.GetUserDelegationCredential(ctx, service.KeyInfo{Start: &startAt, Expiry: &tillAt}, nil)
	if err != nil {
		return nil, wrap(err, "get user delegation key")
	}
	s.udc, s.udcTill = udc, till
	return udc, nil
}

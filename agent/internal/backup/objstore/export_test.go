package objstore

import (
	"context"
	"net/http"
	"net/url"
)

// SetPartSize makes s upload objects larger than n bytes in parts of n
// bytes (tests: the default is 64 MiB).
func SetPartSize(s *S3, n int64) { s.client.partSize = n }

// OpenUploads counts the multipart uploads in progress in s's bucket
// (ListMultipartUploads).
func OpenUploads(ctx context.Context, s *S3) (int, error) {
	var page struct {
		Uploads []struct {
			Key string `xml:"Key"`
		} `xml:"Upload"`
	}
	err := s.client.xmlCall(ctx, request{method: http.MethodGet, bucket: s.bucket, query: url.Values{"uploads": {""}}}, &page)
	return len(page.Uploads), err
}

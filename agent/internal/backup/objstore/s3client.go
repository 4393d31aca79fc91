package objstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// A small S3 client: path-style requests signed with Signature Version 4,
// and only the calls the store makes (put — one request or a multipart
// upload —, get, head, list, delete). It replaced minio-go, which
// brought 2.4 MB of code the agent never ran (event notifications,
// lifecycle, replication, SSE key derivation, MessagePack) into a binary
// whose target is 15 MB.

const (
	// singlePutMax is the largest object sent in one PUT; larger ones go
	// as a multipart upload (S3 takes at most 5 GiB in one PUT).
	singlePutMax = 64 << 20
	// minPartSize is the smallest part of a multipart upload but the
	// last (S3's minimum is 5 MiB).
	minPartSize = 64 << 20
	maxParts    = 10000
	maxObject   = 5 << 40 // S3's largest object
	// partUploads is how many parts of an upload from a file are sent at
	// once.
	partUploads = 4
	// attempts bounds the tries of one request that fails in a way worth
	// retrying (connection lost, 500, 503 SlowDown).
	attempts = 4
)

// s3Client sends S3 requests to one endpoint.
type s3Client struct {
	http     *http.Client
	scheme   string // "https", or "http" with backup.s3.insecure
	endpoint string // host[:port]
	region   string
	creds    s3Credentials
	// partSize, when set (tests), replaces the part size and the one-PUT
	// limit.
	partSize int64
	now      func() time.Time
}

// s3Error is an S3 error response.
type s3Error struct {
	Status    int    `xml:"-"`
	Code      string `xml:"Code"`
	Message   string `xml:"Message"`
	RequestID string `xml:"RequestId"`
}

func (e *s3Error) Error() string {
	switch {
	case e.Code != "" && e.Message != "":
		return fmt.Sprintf("%s (%s)", e.Message, e.Code)
	case e.Code != "":
		return fmt.Sprintf("%s (HTTP %d)", e.Code, e.Status)
	}
	return fmt.Sprintf("HTTP %d %s", e.Status, http.StatusText(e.Status))
}

// retryable reports whether a request that failed with e may succeed if
// sent again.
func (e *s3Error) retryable() bool {
	switch e.Code {
	case "SlowDown", "InternalError", "RequestTimeout", "ServiceUnavailable":
		return true
	}
	return e.Status == http.StatusInternalServerError || e.Status == http.StatusBadGateway ||
		e.Status == http.StatusServiceUnavailable || e.Status == http.StatusGatewayTimeout || e.Status == http.StatusTooManyRequests
}

// notFoundError reports whether err says the object does not exist (and
// not that the bucket does not).
func notFoundError(err error) bool {
	var e *s3Error
	if !errors.As(err, &e) {
		return false
	}
	return e.Code == "NoSuchKey" || e.Status == http.StatusNotFound && e.Code != "NoSuchBucket"
}

// request is one S3 call.
type request struct {
	method string
	bucket string
	key    string
	query  url.Values
	header http.Header
	// body makes the payload afresh for each attempt (nil: none); size is
	// its length and hash its hex SHA-256, or UNSIGNED-PAYLOAD.
	body func() io.Reader
	size int64
	hash string
}

// do sends r, again after a failure worth retrying, and returns the
// response of a 2xx status; any other status is an *s3Error.
func (c *s3Client) do(ctx context.Context, r request) (*http.Response, error) {
	var err error
	for attempt := 0; attempt < attempts; attempt++ {
		if attempt > 0 {
			backoff := time.Duration(250<<(attempt-1)) * time.Millisecond
			backoff += rand.N(backoff / 2)
			select {
			case <-ctx.Done():
				return nil, errors.Join(ctx.Err(), err)
			case <-time.After(backoff):
			}
		}
		var resp *http.Response
		resp, err = c.send(ctx, r)
		if err == nil {
			return resp, nil
		}
		var e *s3Error
		if ctx.Err() != nil || errors.As(err, &e) && !e.retryable() || errors.Is(err, errShortContent) {
			return nil, err
		}
	}
	return nil, err
}

// errShortContent is returned when an upload's source ends before the
// size it was given.
var errShortContent = errors.New("the content ended before its announced size")

func (c *s3Client) send(ctx context.Context, r request) (*http.Response, error) {
	u := &url.URL{Scheme: c.scheme, Host: c.endpoint, Path: "/" + r.bucket, RawQuery: encodeQuery(r.query)}
	if r.key != "" {
		u.Path += "/" + r.key
		u.RawPath = "/" + r.bucket + "/" + uriEncode(r.key, false)
	}
	var body io.Reader
	if r.body != nil {
		body = r.body()
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u.String(), body)
	if err != nil {
		return nil, err
	}
	for k, vs := range r.header {
		req.Header[k] = vs
	}
	req.Header.Set("User-Agent", "flotilla-agent")
	hash := r.hash
	if r.body == nil {
		hash = emptySHA256
	} else {
		req.ContentLength = r.size
		if r.size == 0 {
			req.Body = http.NoBody
		}
	}
	signV4(req, c.creds, c.region, hash, c.now())
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, readError(resp)
}

// readError makes the *s3Error of a failed response.
func readError(resp *http.Response) error {
	e := &s3Error{Status: resp.StatusCode}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if len(b) > 0 {
		_ = xml.Unmarshal(b, e)
	}
	if e.Code == "" && resp.StatusCode == http.StatusNotFound && resp.Request != nil && resp.Request.Method == http.MethodHead {
		e.Code = "NoSuchKey" // a HEAD has no body to say more
	}
	return e
}

// encodeQuery encodes q as SigV4 canonicalizes it (see canonicalQuery), so
// that what is sent is what was signed.
func encodeQuery(q url.Values) string {
	if len(q) == 0 {
		return ""
	}
	return canonicalQuery(q)
}

// discard reads what is left of a response and closes it, so that its
// connection can be reused.
func discard(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
}

// call sends r and returns its response with the body read and closed:
// for the calls whose answer is in the status and the headers.
func (c *s3Client) call(ctx context.Context, r request) (*http.Response, error) {
	resp, err := c.do(ctx, r)
	if err != nil {
		return nil, err
	}
	discard(resp)
	return resp, nil
}

// head returns an object's size and modification time.
func (c *s3Client) head(ctx context.Context, bucket, key string) (int64, time.Time, error) {
	resp, err := c.call(ctx, request{method: http.MethodHead, bucket: bucket, key: key})
	if err != nil {
		return 0, time.Time{}, err
	}
	modified, _ := http.ParseTime(resp.Header.Get("Last-Modified"))
	return resp.ContentLength, modified, nil
}

// get returns an object's content.
func (c *s3Client) get(ctx context.Context, bucket, key string) (io.ReadCloser, error) {
	resp, err := c.do(ctx, request{method: http.MethodGet, bucket: bucket, key: key})
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// remove deletes an object; S3 answers a missing one with success too.
func (c *s3Client) remove(ctx context.Context, bucket, key string) error {
	_, err := c.call(ctx, request{method: http.MethodDelete, bucket: bucket, key: key})
	return err
}

// listEntry is one object of a ListObjectsV2 page.
type listEntry struct {
	Key          string    `xml:"Key"`
	Size         int64     `xml:"Size"`
	LastModified time.Time `xml:"LastModified"`
}

// list returns every object whose key starts with prefix, in key order.
func (c *s3Client) list(ctx context.Context, bucket, prefix string) ([]listEntry, error) {
	var out []listEntry
	token := ""
	for {
		q := url.Values{"list-type": {"2"}, "prefix": {prefix}}
		if token != "" {
			q.Set("continuation-token", token)
		}
		var page struct {
			IsTruncated           bool        `xml:"IsTruncated"`
			NextContinuationToken string      `xml:"NextContinuationToken"`
			Contents              []listEntry `xml:"Contents"`
		}
		if err := c.xmlCall(ctx, request{method: http.MethodGet, bucket: bucket, query: q}, &page); err != nil {
			return nil, err
		}
		out = append(out, page.Contents...)
		if !page.IsTruncated || page.NextContinuationToken == "" {
			return out, nil
		}
		token = page.NextContinuationToken
	}
}

// xmlCall sends r and decodes the XML answer into v. S3 may answer a
// CompleteMultipartUpload with 200 and an error document: that is an
// error too.
func (c *s3Client) xmlCall(ctx context.Context, r request, v any) error {
	resp, err := c.do(ctx, r)
	if err != nil {
		return err
	}
	defer discard(resp)
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if bytes.Contains(b[:min(len(b), 256)], []byte("<Error>")) {
		e := &s3Error{Status: resp.StatusCode}
		if xml.Unmarshal(b, e) == nil && e.Code != "" {
			return e
		}
	}
	if err := xml.Unmarshal(b, v); err != nil {
		return fmt.Errorf("unreadable answer to %s: %w", r.method, err)
	}
	return nil
}

// put stores size bytes of src under key: one PUT up to singlePutMax, a
// multipart upload beyond, aborted if it fails. The object appears only
// once complete.
func (c *s3Client) put(ctx context.Context, bucket, key string, src io.Reader, size int64, header http.Header) error {
	if size < 0 || size > maxObject {
		return fmt.Errorf("object size %d out of range (0 to 5 TiB)", size)
	}
	parts := newPartSource(src, c.scheme == "http")
	single, partSize := int64(singlePutMax), max(int64(minPartSize), (size+maxParts-1)/maxParts)
	if c.partSize > 0 {
		single, partSize = c.partSize, c.partSize
	}
	if size <= single {
		body, hash, err := parts.part(0, size)
		if err != nil {
			return err
		}
		_, err = c.call(ctx, request{method: http.MethodPut, bucket: bucket, key: key, header: header, body: body, size: size, hash: hash})
		return err
	}
	var started struct {
		UploadID string `xml:"UploadId"`
	}
	if err := c.xmlCall(ctx, request{method: http.MethodPost, bucket: bucket, key: key, header: header,
		query: url.Values{"uploads": {""}}}, &started); err != nil {
		return err
	}
	if started.UploadID == "" {
		return errors.New("the server started a multipart upload without an upload ID")
	}
	err := c.uploadParts(ctx, bucket, key, started.UploadID, parts, size, partSize)
	if err != nil {
		// Nothing is visible, but the parts take room until aborted.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if _, aerr := c.call(actx, request{method: http.MethodDelete, bucket: bucket, key: key,
			query: url.Values{"uploadId": {started.UploadID}}}); aerr != nil {
			err = fmt.Errorf("%w (aborting the multipart upload %s also failed: %v)", err, started.UploadID, aerr)
		}
	}
	return err
}

// completedPart is a part of CompleteMultipartUpload.
type completedPart struct {
	PartNumber int    `xml:"PartNumber"`
	ETag       string `xml:"ETag"`
}

// uploadParts sends the parts of an upload (several at once when the
// source can be read at any offset) and completes it.
func (c *s3Client) uploadParts(ctx context.Context, bucket, key, uploadID string, parts *partSource, size, partSize int64) error {
	n := int((size + partSize - 1) / partSize)
	done := make([]completedPart, n)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		once     sync.Once
		firstErr error
	)
	fail := func(err error) { once.Do(func() { firstErr = err; cancel() }) }
	slots := make(chan struct{}, parts.concurrency())
	for i := range n {
		off := int64(i) * partSize
		length := min(partSize, size-off)
		body, hash, err := parts.part(off, length) // sequential sources are read here, in order
		if err != nil {
			fail(err)
			break
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-slots }()
			q := url.Values{"partNumber": {strconv.Itoa(i + 1)}, "uploadId": {uploadID}}
			resp, err := c.call(ctx, request{method: http.MethodPut, bucket: bucket, key: key, query: q, body: body, size: length, hash: hash})
			if err != nil {
				fail(fmt.Errorf("part %d of %d: %w", i+1, n, err))
				return
			}
			done[i] = completedPart{PartNumber: i + 1, ETag: resp.Header.Get("ETag")}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	doc, err := xml.Marshal(struct {
		XMLName xml.Name        `xml:"CompleteMultipartUpload"`
		Parts   []completedPart `xml:"Part"`
	}{Parts: done})
	if err != nil {
		return err
	}
	sum := sha256.Sum256(doc)
	var result struct {
		Key string `xml:"Key"`
	}
	return c.xmlCall(ctx, request{method: http.MethodPost, bucket: bucket, key: key, query: url.Values{"uploadId": {uploadID}},
		body: func() io.Reader { return bytes.NewReader(doc) }, size: int64(len(doc)), hash: hex.EncodeToString(sum[:])}, &result)
}

// partSource cuts an upload's source into request bodies that can be sent
// again: sections of a file (or any io.ReaderAt that is also an io.Seeker,
// read from its current offset), or parts read into memory in order.
type partSource struct {
	ra   io.ReaderAt
	base int64
	r    io.Reader
	// signed: each part's SHA-256 is computed before it is sent (plain
	// HTTP; over HTTPS, TLS protects the payload, which is sent unsigned).
	signed bool
}

func newPartSource(r io.Reader, signed bool) *partSource {
	if ra, ok := r.(io.ReaderAt); ok {
		if sk, ok := r.(io.Seeker); ok {
			if base, err := sk.Seek(0, io.SeekCurrent); err == nil {
				return &partSource{ra: ra, base: base, signed: signed}
			}
		}
	}
	return &partSource{r: r, signed: signed}
}

// concurrency is how many parts may be in flight at once.
func (p *partSource) concurrency() int {
	if p.ra != nil {
		return partUploads
	}
	return 1
}

// part returns the body of bytes [off, off+n) and its payload hash.
func (p *partSource) part(off, n int64) (func() io.Reader, string, error) {
	if p.ra != nil {
		body := func() io.Reader { return &exactReader{r: io.NewSectionReader(p.ra, p.base+off, n), left: n} }
		if !p.signed {
			return body, unsignedPayload, nil
		}
		h := sha256.New()
		got, err := io.Copy(h, body())
		if err != nil {
			return nil, "", err
		}
		if got != n {
			return nil, "", fmt.Errorf("%w: %d of %d bytes at offset %d", errShortContent, got, n, off)
		}
		return body, hex.EncodeToString(h.Sum(nil)), nil
	}
	buf := make([]byte, n)
	if got, err := io.ReadFull(p.r, buf); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, "", fmt.Errorf("%w: %d of %d bytes at offset %d", errShortContent, got, n, off)
		}
		return nil, "", err
	}
	hash := unsignedPayload
	if p.signed {
		sum := sha256.Sum256(buf)
		hash = hex.EncodeToString(sum[:])
	}
	return func() io.Reader { return bytes.NewReader(buf) }, hash, nil
}

// exactReader reads n bytes of r and fails with errShortContent if r ends
// before: the request then fails instead of storing a short object.
type exactReader struct {
	r    io.Reader
	left int64
}

func (e *exactReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	e.left -= int64(n)
	if err == io.EOF && e.left > 0 {
		return n, errShortContent
	}
	return n, err
}

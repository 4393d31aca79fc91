package docker

import (
	"context"
	"fmt"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/moby/moby/client"
	"go.uber.org/zap"

	"flotilla.dev/agent/internal/executor"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

// pull pulls ref, reporting aggregated layer progress, and identifies the
// image it got. An error message anywhere in the engine's stream fails it.
func (e *Executor) pull(ctx context.Context, ref imageRef, progress executor.Progress) (*flotillav1.PullResult, error) {
	start := time.Now()
	progress(&flotillav1.CommandProgress{Message: "pulling " + ref.raw})
	resp, err := e.docker.ImagePull(ctx, ref.named.String(), client.ImagePullOptions{})
	if err != nil {
		return nil, engineError(ctx, err, "pull %s", ref.raw)
	}
	defer resp.Close()

	tracker := newPullTracker(ref.raw, e.progressInterval)
	for msg, err := range resp.JSONMessages(ctx) {
		if err != nil {
			return nil, engineError(ctx, err, "pull %s: reading the engine's progress stream", ref.raw)
		}
		if msg.Error != nil {
			return nil, fmt.Errorf("pull %s failed: %s", ref.raw, msg.Error.Message)
		}
		if p := tracker.update(msg, time.Now()); p != nil {
			progress(p)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref.raw, err)
	}
	progress(tracker.final())

	res, err := e.identify(ctx, ref, tracker.digest)
	if err != nil {
		return nil, err
	}
	e.log.Info("image pulled", zap.String("image", ref.raw), zap.String("image_id", res.ImageId),
		zap.String("repo_digest", res.RepoDigest), zap.Duration("took", time.Since(start)))
	return res, nil
}

// identify inspects the local image that ref names. streamDigest is the
// digest the pull stream announced, used when the engine lists no repo
// digest for the repository.
func (e *Executor) identify(ctx context.Context, ref imageRef, streamDigest string) (*flotillav1.PullResult, error) {
	img, err := e.docker.ImageInspect(ctx, localName(ref))
	if err != nil {
		return nil, engineError(ctx, err, "pull %s: the engine reported success but cannot inspect the image", ref.raw)
	}
	res := &flotillav1.PullResult{Image: ref.raw, ImageId: img.ID}
	for _, d := range img.RepoDigests {
		if sameRepository(d, ref) {
			res.RepoDigest = d
			break
		}
	}
	if res.RepoDigest == "" && streamDigest != "" {
		res.RepoDigest = reference.FamiliarName(ref.named) + "@" + streamDigest
	}
	return res, nil
}

// localName is how the engine finds the image of ref locally: by digest
// when there is one (a "name:tag@digest" reference is stored by digest).
func localName(ref imageRef) string {
	if d, ok := ref.named.(reference.Digested); ok {
		if byDigest, err := reference.WithDigest(reference.TrimNamed(ref.named), d.Digest()); err == nil {
			return byDigest.String()
		}
	}
	return ref.named.String()
}

// imagePresent reports whether the engine has the image of ref locally.
func (e *Executor) imagePresent(ctx context.Context, ref imageRef) (string, bool, error) {
	img, err := e.docker.ImageInspect(ctx, localName(ref))
	switch {
	case err == nil:
		return img.ID, true, nil
	case cerrdefs.IsNotFound(err):
		return "", false, nil
	default:
		return "", false, engineError(ctx, err, "inspect image %s", ref.raw)
	}
}

// engineError describes a failed engine call. Once ctx has ended, the
// context's error is what happened — the transport's error then only says
// that the request was cut — so it is the one wrapped, and callers can
// tell a cancellation or a deadline from a failure.
func engineError(ctx context.Context, err error, format string, args ...any) error {
	what := fmt.Sprintf(format, args...)
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("%s: %w", what, cerr)
	}
	return fmt.Errorf("%s: %w", what, err)
}

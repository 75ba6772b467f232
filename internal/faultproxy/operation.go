package faultproxy

import (
	"net/http"
	"strings"
)

// bucketSubresources are the query parameters that select a bucket-level
// operation other than the plain one (list, create, delete, head).
var bucketSubresources = []string{
	"uploads", "versions", "delete", "location", "versioning", "acl", "policy",
	"policyStatus", "cors", "lifecycle", "tagging", "encryption", "website",
	"logging", "notification", "replication", "object-lock", "ownershipControls",
	"publicAccessBlock", "requestPayment", "accelerate", "analytics",
	"intelligent-tiering", "inventory", "metrics",
}

// Operation names the S3 API operation of a path-style request, e.g.
// "ListBuckets", "CreateBucket", "ListObjectsV2", "PutObject", "CopyObject",
// "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload",
// "AbortMultipartUpload", "GetObject", "HeadObject", "DeleteObject",
// "DeleteObjects". Requests it does not recognize are named "METHOD bucket"
// or "METHOD object" after the level they address.
func Operation(r *http.Request) string {
	path := strings.TrimPrefix(r.URL.Path, "/")
	bucket, key, _ := strings.Cut(path, "/")
	q := r.URL.Query()
	has := func(k string) bool { _, ok := q[k]; return ok }
	copySource := r.Header.Get("X-Amz-Copy-Source") != ""

	if bucket == "" {
		if r.Method == http.MethodGet {
			return "ListBuckets"
		}
		return r.Method + " service"
	}

	if key == "" {
		sub := ""
		for _, s := range bucketSubresources {
			if has(s) {
				sub = s
				break
			}
		}
		switch r.Method {
		case http.MethodGet:
			switch {
			case sub == "uploads":
				return "ListMultipartUploads"
			case sub == "versions":
				return "ListObjectVersions"
			case sub == "location":
				return "GetBucketLocation"
			case sub != "":
				return "GetBucket" + exportName(sub)
			case q.Get("list-type") == "2":
				return "ListObjectsV2"
			default:
				return "ListObjects"
			}
		case http.MethodPut:
			if sub != "" {
				return "PutBucket" + exportName(sub)
			}
			return "CreateBucket"
		case http.MethodDelete:
			if sub != "" {
				return "DeleteBucket" + exportName(sub)
			}
			return "DeleteBucket"
		case http.MethodHead:
			return "HeadBucket"
		case http.MethodPost:
			if sub == "delete" {
				return "DeleteObjects"
			}
		}
		return r.Method + " bucket"
	}

	switch r.Method {
	case http.MethodPut:
		switch {
		case has("partNumber") && has("uploadId") && copySource:
			return "UploadPartCopy"
		case has("partNumber") && has("uploadId"):
			return "UploadPart"
		case has("tagging"):
			return "PutObjectTagging"
		case has("acl"):
			return "PutObjectAcl"
		case has("retention"):
			return "PutObjectRetention"
		case has("legal-hold"):
			return "PutObjectLegalHold"
		case copySource:
			return "CopyObject"
		default:
			return "PutObject"
		}
	case http.MethodGet:
		switch {
		case has("uploadId"):
			return "ListParts"
		case has("tagging"):
			return "GetObjectTagging"
		case has("acl"):
			return "GetObjectAcl"
		case has("attributes"):
			return "GetObjectAttributes"
		case has("retention"):
			return "GetObjectRetention"
		case has("legal-hold"):
			return "GetObjectLegalHold"
		default:
			return "GetObject"
		}
	case http.MethodHead:
		return "HeadObject"
	case http.MethodPost:
		switch {
		case has("uploads"):
			return "CreateMultipartUpload"
		case has("uploadId"):
			return "CompleteMultipartUpload"
		case has("restore"):
			return "RestoreObject"
		}
	case http.MethodDelete:
		switch {
		case has("uploadId"):
			return "AbortMultipartUpload"
		case has("tagging"):
			return "DeleteObjectTagging"
		default:
			return "DeleteObject"
		}
	}
	return r.Method + " object"
}

// exportName turns a query parameter such as "object-lock" or
// "ownershipControls" into "ObjectLock" or "OwnershipControls".
func exportName(s string) string {
	var b strings.Builder
	upper := true
	for _, r := range s {
		if r == '-' {
			upper = true
			continue
		}
		if upper && r >= 'a' && r <= 'z' {
			r -= 'a' - 'A'
		}
		upper = false
		b.WriteRune(r)
	}
	return b.String()
}

package s3

// CredentialKeyIDForTest returns the access key ID c signs with now ("" if
// it has none): which source the chain took.
func CredentialKeyIDForTest(c *Client) string {
	if cur := c.s.creds.cur.Load(); cur != nil {
		return cur.AccessKeyID
	}
	return ""
}

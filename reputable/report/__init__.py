"""`reputable report`: our log joined with Postfix's by queue id, and what receivers answered."""

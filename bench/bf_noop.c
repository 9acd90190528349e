/* The cheapest possible benchmark: a statically linked program that does
 * nothing. Its run time is the cost of process creation, exec and exit, which
 * is what a timing instrument adds to. */
int main(void) { return 0; }

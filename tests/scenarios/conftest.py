"""The HIL suite: scenarios talk only to the board, lab, console and results interfaces."""

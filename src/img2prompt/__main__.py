from img2prompt.cli import main

main()
